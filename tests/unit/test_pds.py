"""PDS4 label-driven reader on the real Chang'e-4 LPR product (values from shared/data/PROVENANCE.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lunarhub.data import pds
from lunarhub.data.build import SOURCE_DIR

STEM = "CE4_GRAS_LPR-1_SCI_N_20231216075001_20231217065500_0316_A"
LABEL = SOURCE_DIR / "change4" / f"{STEM}.2BL"


@pytest.fixture(scope="module")
def label() -> Path:
    if not LABEL.exists():
        pytest.fail(f"{LABEL} is missing: the PDS4 tests need the source data in catalogs/sources (see its PROVENANCE.md)")
    return LABEL


def test_layout_comes_from_the_label(label):
    spec = pds.parse_table_label(label)
    assert spec.records == 101
    assert spec.record_length == 32883
    assert spec.file_size == 3321183
    echo = next(f for f in spec.fields if f.name == "ECHO_DATA")
    assert (echo.location, echo.repetitions, echo.dtype) == (114, 8192, "<f4")
    assert spec.dtype().itemsize == 32883


def test_radargram_values_match_provenance(label):
    ds = pds.lpr_to_xarray(label)
    assert ds.echo.shape == (101, 8192)
    echo = ds.echo.values.astype("f8")
    assert np.isfinite(echo).all()
    assert np.sqrt((echo**2).mean()) == pytest.approx(4348.7, abs=0.1)
    assert echo.min() == pytest.approx(-50750.6, abs=0.1)
    assert echo.max() == pytest.approx(36197.0, abs=0.1)
    assert str(ds.time.values[0]).startswith("2023-12-16T07:56:00.330")
    assert str(ds.time.values[-1]).startswith("2023-12-16T08:06:40.590")
    assert float(ds.y_east.min()) == pytest.approx(-5.55, abs=0.01)
    assert float(ds.twt_ns[1]) == pytest.approx(2.5)


def test_truncated_product_is_refused(label, tmp_path):
    shutil.copy(label, tmp_path / label.name)
    data = label.with_name(f"{STEM}.2B").read_bytes()
    (tmp_path / f"{STEM}.2B").write_bytes(data[: len(data) - 1000])
    with pytest.raises(pds.PDSError, match="truncated"):
        pds.read_table(tmp_path / label.name)


def test_unknown_data_type_is_named(label, tmp_path):
    text = label.read_text(encoding="utf-8").replace("IEEE754MSBSingle", "IEEE754MSBQuad", 1)
    bad = tmp_path / label.name
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(pds.PDSError, match="VELOCITY.*IEEE754MSBQuad"):
        pds.parse_table_label(bad)


def test_tangent_plane_at_lander():
    lon, lat = pds.lander_offset_to_lonlat(np.array([0.0, 1737.4]), np.array([0.0, 0.0]), 177.5991, -45.4446)
    assert lon[0] == 177.5991 and lat[0] == -45.4446
    # 1737.4 m north on a 1737.4 km sphere is 1 mrad
    assert lat[1] - lat[0] == pytest.approx(np.degrees(1e-3))
