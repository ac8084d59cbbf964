"""lunarhub: the analysis environment of the joint Russian-Chinese lunar data center."""

__version__ = "0.1.0"
