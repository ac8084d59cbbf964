"""The deployment model and what belongs to it: one YAML file -> one typed object, the roster, the secrets.

Imported by every runtime; imports nothing else of lunarhub. The model's field descriptions
are the file's documentation (docs/config-reference.md, rendered by `reference`); where the
default deployment file is, and so the default `paths`, is in `locations`.
"""

from lunarhub.config.model import *  # noqa: F403  (the model is `lunarhub.config`)
