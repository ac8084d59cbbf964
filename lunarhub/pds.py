"""`lunarhub.pds`, as notebooks import it: the same module object as :mod:`lunarhub.data.pds`."""

import sys

import lunarhub.data.pds as _impl

sys.modules[__name__] = _impl
