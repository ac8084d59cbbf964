"""`lunarhub.doctor`, as notebooks import it: the same module object as :mod:`lunarhub.science.doctor`."""

import sys

import lunarhub.science.doctor as _impl

sys.modules[__name__] = _impl
