"""Helpers shared by every test layer (imported as ``support.*``: tests/conftest.py puts tests/ on sys.path).

Test modules import helpers from here, never ``from conftest import ...``: each layer has its
own conftest.py, all named ``conftest``, so which one that name means depends on collection order.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
