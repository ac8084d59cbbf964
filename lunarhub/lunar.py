"""The Moon as the package models it: one sphere and the IAU 2015 CRS codes on it.

Imports nothing from lunarhub (nor anything outside the standard library), so a user's
kernel, the data build and the hub read the same numbers without pulling in each other.
"""

from __future__ import annotations

from typing import Final

# IAU 2015 mean radius; LOLA heights and every IAU_2015:301xx CRS refer to this sphere,
# so a radius from anywhere else would put products and their CRS out of step.
MOON_RADIUS_M: Final = 1_737_400.0

GEOGRAPHIC: Final = "IAU_2015:30100"  # planetocentric lon/lat, degrees
EQUIRECTANGULAR: Final = "IAU_2015:30110"  # equidistant cylindrical, centre lon 0, metres
SOUTH_POLAR: Final = "IAU_2015:30135"  # south polar stereographic, metres
