"""`lunarhub.catalog`, as notebooks import it: the same module object as :mod:`lunarhub.data.catalog`."""

import sys

import lunarhub.data.catalog as _impl

sys.modules[__name__] = _impl
