"""The deployment model and what belongs to it: one YAML file -> one typed object, the roster, the secrets.

Imported by every runtime; imports nothing else of lunarhub.
"""

from lunarhub.config.model import *  # noqa: F403  (the model is `lunarhub.config`)
