"""One deployment CA and server certificate for the test run's stacks (tls.mode: self-signed).

Made once per process by the code `lunarhub up` runs (lunarhub.platform.tls.ensure) and placed
in each stack's secrets dir before its `up`, which keeps them: every stack of the run then serves
the same certificate, so one CA bundle (system CAs + this CA) verifies them all from the test
process, and one SPKI pin lets Chromium accept exactly that key. tests/integration/test_tls.py
starts a stack without it and checks that `up` makes its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

from support import ROOT

_TEMPLATE: Path | None = None


def _template() -> Path:
    global _TEMPLATE
    if _TEMPLATE is None:
        from lunarhub import config
        from lunarhub.platform import tls

        tmp = Path(tempfile.mkdtemp(prefix="lunarhub-tls-"))
        data = yaml.safe_load((ROOT / "hub" / "lunarhub.yaml").read_text())
        data["state_dir"] = str(tmp / "state")
        data.setdefault("tls", {})["mode"] = "self-signed"
        d = config.Deployment.model_validate(data)
        d._base_dir = ROOT / "hub"
        tls.ensure(d)
        _TEMPLATE = tmp / "state"
        import atexit

        atexit.register(shutil.rmtree, tmp, True)
    return _TEMPLATE


def bundle() -> Path:
    """System CAs + the run's deployment CA."""
    return _template() / "tls" / "ca-bundle.pem"


def server_cert() -> Path:
    return _template() / "secrets" / "tls" / "server.crt"


def pin() -> str:
    from lunarhub.platform import tls

    return tls.spki_pin(server_cert())


def trust_in_process() -> None:
    """Plain `requests.get(...)`, GDAL, tornado, aiohttp and websockets clients of the tests verify
    with the run's CA (every variable the stack gives its own clients, lunarhub.platform.tls)."""
    from lunarhub.platform import tls

    for name in tls.CLIENT_VARIABLES:
        os.environ[name] = str(bundle())


def seed(secrets_dir: Path) -> None:
    """Give a stack the run's CA and certificate before its first `up` (kept: same host names)."""
    src = _template() / "secrets" / "tls"
    for level in (secrets_dir, secrets_dir / "tls"):
        level.mkdir(parents=True, exist_ok=True)
        os.chmod(level, 0o700)
    for f in src.iterdir():
        target = secrets_dir / "tls" / f.name
        if not target.exists():
            shutil.copy2(f, target)
            os.chmod(target, 0o600)
    trust_in_process()
