"""`lunarhub.terrain`, as notebooks import it: the same module object as :mod:`lunarhub.science.terrain`."""

import sys

import lunarhub.science.terrain as _impl

sys.modules[__name__] = _impl
