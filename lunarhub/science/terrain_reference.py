"""Slow, obvious reference implementations for testing :mod:`lunarhub.science.terrain`.

Pixel-by-pixel Python loops over plain numpy arrays, sharing no code with the library:
rows run north to south, columns west to east, ``dx[i]`` is the (positive) width in metres
of a pixel in row ``i`` and ``dy`` the (positive) height. Border pixels are NaN.
Only for small grids.
"""

from __future__ import annotations

import math

import numpy as np

from lunarhub.lunar import MOON_RADIUS_M


def _horn(z: np.ndarray, i: int, j: int, dx: float, dy: float) -> tuple[float, float]:
    """(dz/d east, dz/d north) at (i, j) by Horn (1981), neighbours named as in his paper."""
    a, b, c = z[i - 1, j - 1], z[i - 1, j], z[i - 1, j + 1]
    d, f = z[i, j - 1], z[i, j + 1]
    g, h, k = z[i + 1, j - 1], z[i + 1, j], z[i + 1, j + 1]
    dz_de = ((c + 2 * f + k) - (a + 2 * d + g)) / (8 * dx)
    dz_dn = ((a + 2 * b + c) - (g + 2 * h + k)) / (8 * dy)  # row above is north
    return float(dz_de), float(dz_dn)


def _each_interior(z: np.ndarray, r: int = 1):
    ny, nx = z.shape
    for i in range(r, ny - r):
        for j in range(r, nx - r):
            yield i, j


def slope(z: np.ndarray, dx: np.ndarray, dy: float) -> np.ndarray:
    out = np.full(z.shape, np.nan)
    for i, j in _each_interior(z):
        p, q = _horn(z, i, j, dx[i], dy)
        out[i, j] = math.degrees(math.atan(math.hypot(p, q)))
    return out


def aspect(z: np.ndarray, dx: np.ndarray, dy: float) -> np.ndarray:
    out = np.full(z.shape, np.nan)
    for i, j in _each_interior(z):
        p, q = _horn(z, i, j, dx[i], dy)
        if p == 0 and q == 0:
            continue
        # Compass bearing of the downhill vector (-p, -q).
        out[i, j] = math.degrees(math.atan2(-p, -q)) % 360.0
    return out


def hillshade(z: np.ndarray, dx: np.ndarray, dy: float, azimuth: float, altitude: float) -> np.ndarray:
    """gdaldem's value 1 + 254*cos(incidence), 1 in shadow, from slope and aspect angles."""
    out = np.full(z.shape, np.nan)
    zen = math.radians(90 - altitude)
    az = math.radians(azimuth)
    for i, j in _each_interior(z):
        p, q = _horn(z, i, j, dx[i], dy)
        s = math.atan(math.hypot(p, q))
        asp = math.atan2(-p, -q)
        cang = math.cos(zen) * math.cos(s) + math.sin(zen) * math.sin(s) * math.cos(az - asp)
        out[i, j] = 1.0 if cang <= 0 else 1.0 + 254.0 * cang
    return out


def roughness_range(z: np.ndarray, window: int = 3) -> np.ndarray:
    r = window // 2
    out = np.full(z.shape, np.nan)
    for i, j in _each_interior(z, r):
        w = z[i - r:i + r + 1, j - r:j + r + 1]
        out[i, j] = max(w.flat) - min(w.flat)
    return out


def tri_riley(z: np.ndarray, window: int = 3) -> np.ndarray:
    r = window // 2
    out = np.full(z.shape, np.nan)
    for i, j in _each_interior(z, r):
        total = 0.0
        for di in range(-r, r + 1):
            for dj in range(-r, r + 1):
                total += (z[i + di, j + dj] - z[i, j]) ** 2
        out[i, j] = math.sqrt(total)
    return out


def great_circle_km(lon: float, lat: float, lon0: float, lat0: float, radius_m: float = MOON_RADIUS_M) -> float:
    """Central angle by the spherical law of cosines (not haversine, to be independent)."""
    p1, p2 = math.radians(lat), math.radians(lat0)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(math.radians(lon - lon0))
    return radius_m * math.acos(max(-1.0, min(1.0, c))) / 1000.0
