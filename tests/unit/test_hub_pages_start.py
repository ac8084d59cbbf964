"""What a user's JupyterLab starts with (issue 15): shipped settings that make no internet calls,
Panel's server extension off, the launcher tile's icon, the memory limit in the status bar, and
the start wrapper that spares each start rfc3987-syntax's grammar compiling (with its canary)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from packaging.version import Version
from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

from lunarhub.platform.hub import spawning
from lunarhub.upstream import jsonschema_iri, versions

ROOT = Path(__file__).resolve().parents[2]
KCONF = ROOT / "kernels" / "config"
SCHEMAS = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"

LOADED = "import sys; print('rfc3987_syntax.syntax_helpers' in sys.modules)"


def python(code: str, *args: str) -> str:
    out = subprocess.run([sys.executable, *args, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_canary_a_jupyter_server_still_compiles_rfc3987_grammars_at_import() -> None:
    """If this fails, upstream fixed it: remove lunarhub/upstream/jsonschema_iri.py."""
    assert python(f"import jupyter_server.serverapp; {LOADED}") == "True"


def test_with_the_stand_in_the_server_imports_without_them_and_iri_checks_still_work() -> None:
    code = ("from lunarhub.upstream import jsonschema_iri as j; j.apply()\n"
            "import sys, jupyter_server.serverapp\n"
            "before = 'rfc3987_syntax.syntax_helpers' in sys.modules\n"
            "from jsonschema import Draft202012Validator as V\n"
            "v = V({'format': 'iri'}, format_checker=V.FORMAT_CHECKER)\n"
            "print(before, v.is_valid('http://a b'), v.is_valid('http://example.org/луна'),"
            " 'rfc3987_syntax.syntax_helpers' in sys.modules)")
    assert python(code) == "False False True True"


def test_the_wrapper_runs_the_script_with_its_arguments(tmp_path: Path) -> None:
    script = tmp_path / "jupyterhub-singleuser"
    script.write_text("import sys; print(sys.argv[0].endswith('jupyterhub-singleuser'), sys.argv[1:], "
                      "getattr(sys.modules['rfc3987_syntax'], '__lunarhub_stand_in__', False))\n")
    out = subprocess.run(
        [sys.executable, "-m", "lunarhub.upstream.jsonschema_iri", str(script), "--allow-root", "--x=1"],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert out == "True ['--allow-root', '--x=1'] True"


def test_the_wrapper_says_how_to_use_it() -> None:
    out = subprocess.run([sys.executable, "-m", "lunarhub.upstream.jsonschema_iri"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "usage: python -m lunarhub.upstream.jsonschema_iri SCRIPT" in out.stderr


def test_apply_refuses_a_release_outside_its_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "installed", lambda d: Version("99.0") if d == "jsonschema"
                        else Version(versions.metadata.version(d)))
    with pytest.raises(versions.UnsupportedUpstreamVersion, match="jsonschema>=4.25,<4.27"):
        jsonschema_iri.apply()


def test_installed_releases_are_inside_the_range() -> None:
    versions.require(jsonschema_iri.__name__, jsonschema_iri.RANGES, jsonschema_iri.UPSTREAM)


def test_users_servers_start_through_the_wrapper(tmp_path: Path) -> None:
    from lunarhub import config

    d = config.load(ROOT / "hub" / "lunarhub.yaml")
    d = d.model_copy(update={"state_dir": str(tmp_path),
                             "hub": d.hub.model_copy(update={"isolation": "single-account",
                                                             "resource_limits": "none"})})
    c = types.SimpleNamespace(JupyterHub=types.SimpleNamespace(), Spawner=types.SimpleNamespace(),
                              LunarSingleAccountSpawner=types.SimpleNamespace())
    spawning.configure_spawner(c, d)
    assert c.Spawner.cmd[1:3] == ["-m", "lunarhub.upstream.jsonschema_iri"]
    assert c.Spawner.cmd[3].endswith("/jupyterhub-singleuser") and Path(c.Spawner.cmd[0]).exists()


def test_memory_limit_is_shown_and_replaced_at_the_next_start() -> None:
    sp = types.SimpleNamespace(args=["--HubOAuth.cache_max_age=5"])
    spawning.show_memory_limit(sp, 2 * 1024**3)
    spawning.show_memory_limit(sp, 6 * 1024**3)
    assert sp.args == ["--HubOAuth.cache_max_age=5", f"--ResourceUseDisplay.mem_limit={6 * 1024**3}"]


def test_server_config_turns_off_news_update_checks_and_panels_extension() -> None:
    cfg = JSONFileConfigLoader("jupyter_server_config.json", str(KCONF)).load_config()
    assert cfg.LabApp.news_url is None
    assert cfg.LabApp.check_for_updates_class.endswith("NeverCheckForUpdate")
    assert cfg.ServerApp.jpserver_extensions["panel.io.jupyter_server_extension"] is False
    from jupyterlab.handlers import announcements

    assert hasattr(announcements, "NeverCheckForUpdate")
    py = PyFileConfigLoader("jupyter_server_config.py", str(KCONF)).load_config()
    assert Path(py.LabApp.app_settings_dir) == KCONF / "lab-settings"


def test_shipped_lab_settings_name_real_plugins_and_valid_values() -> None:
    import jsonschema

    overrides = json.loads((KCONF / "lab-settings" / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false",
                                                                        "checkForUpdates": False}
    for plugin, values in overrides.items():
        package, _, name = plugin.partition(":")
        schema = json.loads((SCHEMAS / package / f"{name}.json").read_text())
        for key, value in values.items():
            assert key in schema["properties"], (plugin, key)
            jsonschema.validate(value, schema["properties"][key])


def test_the_publish_tile_has_an_icon_shipped_with_the_package() -> None:
    import tomllib

    from lunarhub.dashboards.publishing import form

    entry = form.setup()["launcher_entry"]
    icon = Path(entry["icon_path"])
    assert icon.is_file() and icon.read_text().lstrip().startswith("<svg")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(icon.match(g) for g in data["lunarhub.dashboards.publishing"])


def test_test_browser_gets_cjk_fonts() -> None:
    makefile = (ROOT / "Makefile").read_text()
    line = next(ln for ln in makefile.splitlines() if ln.startswith("APT_TEST"))
    assert "fonts-noto-cjk" in line.split()


def test_the_publish_tile_sits_in_the_kernels_section_in_the_users_language(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """JupyterLab shows a tile's icon only in the kernels' section, named in the UI language."""
    from lunarhub.dashboards.publishing import form

    monkeypatch.delenv("LUNARHUB_UI_LANGUAGE", raising=False)
    assert form.launcher_category(tmp_path) == "Notebook"
    monkeypatch.setenv("LUNARHUB_UI_LANGUAGE", "zh")
    assert form.launcher_category(tmp_path) == "笔记本"
    plugin = tmp_path / "@jupyterlab" / "translation-extension" / "plugin.jupyterlab-settings"
    plugin.parent.mkdir(parents=True)
    plugin.write_text('{\n  // chosen in Settings\n  "locale": "ru_RU"\n}')
    assert form.launcher_category(tmp_path) == "Блокнот"
    plugin.write_text('{"locale": "en"}')
    assert form.launcher_category(tmp_path) == "Notebook"
    # The names are the language packs' own translations of JupyterLab's "Notebook".
    for locale, name in form.NOTEBOOK_SECTION.items():
        pack = __import__(f"jupyterlab_language_pack_{locale}")
        catalog = Path(pack.__file__).parent / "locale" / locale / "LC_MESSAGES" / "jupyterlab.json"
        assert json.loads(catalog.read_text())["Notebook"] == [name]
