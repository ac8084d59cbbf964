"""Catalog validation and local reads (no servers): good and broken catalogs, CRS, extents."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from lunarhub.cli import catalog as catalog_cli
from lunarhub.data import catalog

REPO = Path(__file__).resolve().parents[2]
CATALOGS = REPO / "catalogs"


def test_shipped_catalogs_validate():
    problems = catalog.validate(CATALOGS)
    assert problems == [], "\n".join(map(str, problems))
    assert catalog_cli.main(["validate", str(CATALOGS)]) == 0


def _copy_catalogs(tmp_path: Path) -> Path:
    """Catalog files in tmp, data paths pointing back at the repo's data."""
    for name in ("root.yaml", "ru.yaml", "cn.yaml"):
        text = (CATALOGS / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text.replace("{{ CATALOG_DIR }}/data/", f"{CATALOGS}/data/"), encoding="utf-8")
    return tmp_path


def test_missing_field_names_file_entry_field(tmp_path, capsys):
    d = _copy_catalogs(tmp_path)
    data = yaml.safe_load((d / "ru.yaml").read_text(encoding="utf-8"))
    del data["sources"]["gazetteer"]["metadata"]["license"]
    del data["sources"]["lola_global_dem"]["metadata"]["title"]["zh"]
    data["sources"]["landing_sites"]["metadata"]["policy"] = "secret"
    (d / "ru.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    problems = catalog.validate(d)
    found = {(Path(p.file).name, p.entry, p.field) for p in problems}
    assert ("ru.yaml", "gazetteer", "metadata.license") in found
    assert ("ru.yaml", "lola_global_dem", "metadata.title.zh") in found
    assert ("ru.yaml", "landing_sites", "metadata.policy") in found
    assert catalog_cli.main(["validate", str(d)]) == 1
    err = capsys.readouterr().err
    assert "ru.yaml: entry gazetteer: field metadata.license: missing" in err


def test_yaml_error_names_file_and_line(tmp_path):
    d = _copy_catalogs(tmp_path)
    (d / "cn.yaml").write_text("sources:\n  basemap: [unclosed\n", encoding="utf-8")
    problems = catalog.validate(d / "cn.yaml")
    assert len(problems) == 1
    assert problems[0].field == "(yaml)" and "line" in problems[0].message
    assert problems[0].file.endswith("cn.yaml")


def test_entry_that_does_not_open_and_wrong_crs(tmp_path):
    d = _copy_catalogs(tmp_path)
    data = yaml.safe_load((d / "ru.yaml").read_text(encoding="utf-8"))
    data["sources"]["lola_global_dem"]["args"]["urlpath"] = str(CATALOGS / "data/ru/open/lola/missing.tif")
    data["sources"]["lola_global_dem_180"]["metadata"]["crs"] = "IAU_2015:30135"
    (d / "ru.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    found = {(p.entry, p.field): p.message for p in catalog.validate(d / "ru.yaml")}
    assert ("lola_global_dem", "args.urlpath") in found
    assert "IAU_2015:30100" in found[("lola_global_dem_180", "metadata.crs")]


def test_truncated_cog_is_an_error_not_garbage(tmp_path):
    src = CATALOGS / "data/ru/open/lola/ldem4_0360.tif"
    d = tmp_path / "data/ru/open/lola"
    d.mkdir(parents=True)
    raw = src.read_bytes()
    (d / "ldem4_0360.tif").write_bytes(raw[: len(raw) // 2])
    spec = yaml.safe_load((CATALOGS / "ru.yaml").read_text(encoding="utf-8"))["sources"]["lola_global_dem"]
    entry = catalog.Entry("lola_global_dem", spec, str(tmp_path), None, "test")
    da = entry.read()
    with pytest.raises(Exception, match="(?i)read|tiff|error"):
        da.values  # noqa: B018 - the lazy read must fail loudly


def test_local_read_lazy_with_crs_and_coordinates():
    cat = catalog.open_catalog(path=CATALOGS / "root.yaml")
    da = cat["ru"]["lola_global_dem"].read()
    assert da.chunks is not None  # dask-backed
    assert ":".join(da.rio.crs.to_authority()) == "IAU_2015:30100"
    assert float(da.x[0]) == pytest.approx(0.125) and float(da.y[0]) == pytest.approx(89.875)
    # heights in metres (DN x 0.5), PROVENANCE: -8878.5 .. 10504 m
    assert float(da.min()) == pytest.approx(-8878.5) and float(da.max()) == pytest.approx(10504.0)
    polar = cat["ru"]["boguslawsky_dem"].read()
    assert catalog.crs_code(polar.rio.crs) == "IAU_2015:30135"


def test_request_outside_extent_is_clear():
    cat = catalog.open_catalog(path=CATALOGS / "root.yaml")
    with pytest.raises(catalog.OutsideExtent, match="manzinus_dem.*outside"):
        cat["ru"]["manzinus_dem"].read_bbox(170, -50, 180, -40)
    part = cat["ru"]["lola_global_dem"].read_bbox(177, -46, 178, -45)
    assert part.shape == (1, 4, 4)


def test_served_copies_match_site_catalogs():
    for site in ("ru", "cn"):
        src = (CATALOGS / f"{site}.yaml").read_text(encoding="utf-8")
        served = (CATALOGS / "data" / site / "catalog.yaml").read_text(encoding="utf-8")
        assert served == src.replace("{{ CATALOG_DIR }}/data/" + site + "/", "{{ CATALOG_DIR }}/")


def test_data_sizes_stay_small():
    total = sum(p.stat().st_size for p in (CATALOGS / "data").rglob("*") if p.is_file())
    assert total < 15e6
    assert shutil.which  # keep import used
