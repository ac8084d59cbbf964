"""`lunarhub.terrain_io`, as notebooks import it: the same module object as :mod:`lunarhub.science.terrain_io`."""

import sys

import lunarhub.science.terrain_io as _impl

sys.modules[__name__] = _impl
