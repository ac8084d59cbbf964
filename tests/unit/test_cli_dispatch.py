"""The `lunarhub` command hands subcommands owned by other modules their arguments untouched."""

from lunarhub import cli


def test_config_subcommand_validates_demo(capsys):
    assert cli.main(["config"]) == 0
    assert "valid (6 users" in capsys.readouterr().out


def test_catalog_validate_passthrough(capsys):
    assert cli.main(["catalog", "validate", "--no-open"]) == 0
    assert "catalogs OK" in capsys.readouterr().out


def test_catalog_validate_reports_bad_catalog(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  x: {driver: rasterio\n")
    assert cli.main(["catalog", "validate", "--no-open", str(bad)]) != 0
    out = capsys.readouterr()
    assert str(bad) in out.out + out.err


def test_config_before_subcommand_and_bad_config(tmp_path, capsys):
    cfg = tmp_path / "d.yaml"
    cfg.write_text("institutions: {}\ngroups: {}\nusers: {x: {groups: [nope]}}\n")
    assert cli.main(["--config", str(cfg), "config"]) == 2
    assert "users.x.groups" in capsys.readouterr().err
    assert cli.main(["--config", str(cfg), "render", "kubernetes"]) == 2
