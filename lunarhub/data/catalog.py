"""Federated catalogs of the data sites, for notebooks and for `lunarhub catalog validate`.

In a user's server the spawner injected, per site, `LUNARHUB_SITE_<NAME>_URL`
and (if the user has credentials) `_USER`, `_PASSWORD`, `_AUTH`, `_POLICIES`
(see lunarhub.data.sites.credentials_for). `open_catalog()` fetches each site's own
`catalog.yaml`, keeps the entries the user is entitled to, and returns
`cat["ru"]["lola_global_dem"]`-style access; `.read()` / `.to_dask()` give lazy
dask-backed xarray objects (rasters with their lunar CRS via rioxarray).

Remote rasters are read by GDAL's /vsicurl/ (HTTP range reads of COG tiles
and overviews). The per-site password is given to GDAL as a path-specific
option (VSISetPathSpecificOption, GDAL >= 3.6) so it never appears in URLs,
xarray encodings or error messages, and works in dask worker threads.

The site catalogs are plain intake v1 YAML: `intake.open_catalog(URL, storage_options=
{"headers": {"Authorization": ...}})` opens them too (docs/data-sites.md).
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import requests
import yaml

from lunarhub.config import default_location
from lunarhub.data.policy import POLICIES, env_prefix
from lunarhub.lunar import GEOGRAPHIC

if TYPE_CHECKING:  # imported where used, so that opening a catalog stays light
    import pandas as pd
    import xarray as xr
    from fsspec.core import OpenFile

ROOT_CATALOG = default_location("catalogs") / "root.yaml"
LANGS = ("en", "ru", "zh")
REQUIRED = ("title", "description", "site", "policy", "mission", "instrument", "crs", "units", "citation",
            "license", "extent")
DRIVERS = {"rasterio", "zarr", "netcdf", "csv"}
CATALOG_DRIVERS = {"yaml_file_cat", "intake_catalog"}
TIMEOUT = float(os.environ.get("LUNARHUB_SITE_TIMEOUT", "5"))
# Set by a dashboard's publish validation (lunarhub.dashboards.publishing.validate): each
# dataset the notebook reads is appended there as one JSON line, its lineage.
LINEAGE_ENV = "LUNARHUB_LINEAGE_FILE"

# GDAL: never list a remote "directory" to find sidecar files (saves requests, and
# the sites answer 404 to listings anyway).
os.environ.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")


class CatalogError(Exception):
    """A catalog or dataset that cannot be used, with what and where."""


class SiteUnavailable(CatalogError):
    """A data site that does not answer (the other sites keep working)."""


class CredentialsMissing(CatalogError):
    """401 from a site: no or wrong credentials."""


class NotEntitled(CatalogError):
    """403 from a site: valid user, but not entitled to the dataset's policy."""


class OutsideExtent(CatalogError):
    """A request for an area a dataset does not cover."""


class AtSiteOnly(NotEntitled):
    """An `at-site` dataset read outside its site's workers (or outside lunarhub.at_site)."""


# The key of a task that reads at-site data: (AT_SITE_KEY, site, path, token). The site's scheduler
# meters what such tasks (and what is computed from them) return to the client (lunarhub.compute.egress).
AT_SITE_KEY = "lunarhub-at-site"


# ---------------------------------------------------------------- site access


@dataclass
class SiteAccess:
    name: str
    url: str
    user: str | None = None
    password: str | None = None
    policies: set[str] = field(default_factory=lambda: {"open"})
    at_site: set[str] = field(default_factory=set)

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.user, self.password) if self.user and self.password else None

    def headers(self) -> dict[str, str]:
        import base64

        if not self.auth:
            return {}
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


def sites_from_env(environ: Mapping[str, str] | None = None) -> dict[str, SiteAccess]:
    env = os.environ if environ is None else environ
    names = [n for n in env.get("LUNARHUB_SITES", "").split(",") if n]
    out = {}
    for name in names:
        p = env_prefix(name)
        url = env.get(f"{p}_URL")
        if not url:
            continue
        pol = env.get(f"{p}_POLICIES")
        at_site = env.get(f"{p}_AT_SITE")
        out[name] = SiteAccess(name, url.rstrip("/"), env.get(f"{p}_USER"), env.get(f"{p}_PASSWORD"),
                               set(pol.split(",")) if pol else {"open"},
                               set(at_site.split(",")) if at_site else set())
    return out


def local_root(site: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """On a worker of `site`'s own cluster: the site's data folder (the site gateway sets
    LUNARHUB_AT_SITE and LUNARHUB_SITE_<NAME>_LOCAL_ROOT in its jobs); elsewhere None."""
    env = os.environ if environ is None else environ
    root = env.get(f"{env_prefix(site)}_LOCAL_ROOT")
    return Path(root) if root and env.get("LUNARHUB_AT_SITE") == site else None


def _current_task_key() -> Any:
    try:
        from distributed import get_worker

        return get_worker().get_current_task()
    except (ImportError, ValueError):
        return None


_gdal_lock = threading.Lock()
_gdal_auth_done: set[tuple[str, str | None]] = set()


def _gdal() -> ctypes.CDLL:
    import rasterio

    libs = glob.glob(os.path.join(os.path.dirname(rasterio.__file__) + ".libs", "libgdal*"))
    return ctypes.CDLL(libs[0] if libs else "libgdal.so")


def _gdal_site_auth(site: SiteAccess) -> None:
    """Give GDAL this site's credentials for every /vsicurl/ path under its URL."""
    key = (site.url, site.user)
    if not site.auth or key in _gdal_auth_done:
        return
    with _gdal_lock:
        lib = _gdal()
        prefix = f"/vsicurl/{site.url}/".encode()
        lib.VSISetPathSpecificOption(prefix, b"GDAL_HTTP_AUTH", b"BASIC")
        lib.VSISetPathSpecificOption(prefix, b"GDAL_HTTP_USERPWD", f"{site.user}:{site.password}".encode())
        _gdal_auth_done.add(key)


def _http_check(site: SiteAccess, href: str, what: str) -> requests.Response:
    """Turn a site's answer into a clear error before a library hides it; the HEAD's answer
    (its ETag, Last-Modified and size say which version of the file the site serves)."""
    try:
        r = requests.head(href, auth=site.auth, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise SiteUnavailable(f"data site {site.name} at {site.url} is not reachable ({type(exc).__name__}); "
                              "other sites are not affected") from None
    if r.status_code == 401:
        raise CredentialsMissing(
            f"site {site.name}: credentials missing or not valid for {what} "
            f"({'no LUNARHUB_SITE_' + site.name.upper() + '_USER/_PASSWORD' if not site.auth else 'rejected'}; "
            "restart your server to get fresh credentials)")
    if r.status_code == 403:
        if r.headers.get("X-Lunarhub-Refusal") == "policy":
            raise NotEntitled(f"site {site.name}: user {site.user} is not entitled to {what}")
        raise CatalogError(f"site {site.name}: HTTP 403 for {what} at {href} that is not a policy refusal "
                           "(can the site's server read its data directory?)")
    if r.status_code == 404:
        raise CatalogError(f"site {site.name}: {what} not found at {href}")
    if r.status_code >= 400:
        raise CatalogError(f"site {site.name}: HTTP {r.status_code} for {what} at {href}")
    return r


def record_lineage(entry: Entry, headers: Mapping[str, str] | None = None, sha256: str | None = None,
                   environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Append what `entry` read to the lineage file a publish validation named ($LUNARHUB_LINEAGE_FILE);
    nothing outside a validation run. The gallery cross-checks these lines against the sites'
    own logs, so they only add detail (entry, version), never decide alone what was read."""
    target = (os.environ if environ is None else environ).get(LINEAGE_ENV)
    if not target:
        return None
    site = entry.site
    path = entry.href[len(site.url):].lstrip("/") if site and entry.remote and entry.href.startswith(site.url) \
        else entry.href
    h = headers or {}
    size = h.get("Content-Length")
    rec: dict[str, Any] = {
        "site": entry.metadata.get("site") or (site.name if site else None), "entry": entry.name,
        "path": path, "policy": entry.metadata.get("policy"),
        "version": {k: v for k, v in (("etag", h.get("ETag")), ("last_modified", h.get("Last-Modified")),
                                      ("size", int(size) if size and size.isdigit() else None),
                                      ("sha256", sha256)) if v is not None},
        "time": round(time.time(), 3), "source": "library",
    }
    # One write on an O_APPEND descriptor: dask threads reading at once never interleave lines.
    line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return rec


# ---------------------------------------------------------------- entries


class Entry:
    """One dataset of a site catalog."""

    def __init__(self, name: str, spec: dict[str, Any], base: str, site: SiteAccess | None, catalog_file: str):
        self.name = name
        self.spec = spec
        self.driver = spec.get("driver")
        self.args = dict(spec.get("args") or {})
        self.metadata: dict[str, Any] = dict(spec.get("metadata") or {})
        self.description = spec.get("description", "")
        self.site = site
        self.catalog_file = catalog_file
        self.href = str(self.args.get("urlpath", "")).replace("{{ CATALOG_DIR }}", base)

    def __repr__(self) -> str:
        extra = " at-site" if self.at_site_only else ""
        return f"<Entry {self.metadata.get('site', '?')}/{self.name} {self.driver} policy={self.metadata.get('policy')}{extra}>"

    @property
    def site_name(self) -> str | None:
        return self.metadata.get("site") or (self.site.name if self.site else None)

    @property
    def relpath(self) -> str:
        """The dataset's path on its site (its first folder is its policy), the same on every route."""
        urlpath = str(self.args.get("urlpath", ""))
        rel = urlpath.split("{{ CATALOG_DIR }}", 1)[-1].lstrip("/")
        site = self.site_name
        if site and rel.startswith(f"data/{site}/"):
            rel = rel[len(f"data/{site}/"):]  # catalogs/<site>.yaml in the checkout
        return rel

    @property
    def at_site_only(self) -> bool:
        """This user may compute on the dataset at its site but not download it (sites.<name>.at_site)."""
        return self.site is not None and self.relpath in self.site.at_site

    def local_path(self) -> Path | None:
        """The file on this machine's disk when running on a worker of the entry's site, else None."""
        site = self.site_name
        root = local_root(site) if site else None
        if root is None:
            return None
        parts = self.relpath.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise CatalogError(f"{self.catalog_file}: entry {self.name}: path {self.relpath!r} is not a plain "
                               "path on the site")
        return root.joinpath(*parts)

    def cluster(self, **options: Any) -> Any:
        """A dask-gateway cluster at this entry's site (lunarhub.compute.placement.cluster_for)."""
        from lunarhub.compute.placement import cluster_for

        return cluster_for(self, **options)

    def at_site(self, fn: Any, *args: Any, cluster: Any = None, **kwargs: Any) -> Any:
        """`fn(data, *args, **kwargs)` computed at the entry's site, its (small) result returned
        (lunarhub.compute.placement.at_site)."""
        from lunarhub.compute.placement import at_site

        return at_site(self, fn, *args, cluster=cluster, **kwargs)

    @property
    def remote(self) -> bool:
        return self.href.startswith(("http://", "https://"))

    def title(self, lang: str = "en") -> str:
        t = self.metadata.get("title") or {}
        return t.get(lang) or t.get("en") or self.name

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "driver": self.driver, "href": self.href, "metadata": self.metadata}

    def _check(self) -> Mapping[str, str]:
        local = self.local_path()
        if local is not None:
            return self._check_local(local)
        if self.at_site_only:
            raise AtSiteOnly(f"site {self.site_name}: {self.relpath} ({self.name}) is at-site data: you may compute "
                             f"on it at site {self.site_name}, not download it; use "
                             f"entry.at_site(fn) or lunarhub.at_site(entry, fn) with a function that reduces it")
        if self.remote and self.site is not None:
            return _http_check(self.site, self.href,
                               f"{self.metadata.get('policy', '?')!r} dataset {self.name}").headers
        if not self.remote and not Path(self.href).exists():
            raise CatalogError(f"{self.catalog_file}: entry {self.name}: file {self.href} does not exist")
        return {}

    def _check_local(self, path: Path) -> Mapping[str, str]:
        """Reading by local path on a worker at the site: as the job's group may (local_reads)."""
        if self.at_site_only:
            key = _current_task_key()
            if not (isinstance(key, tuple) and key[:3] == (AT_SITE_KEY, self.site_name, self.relpath)):
                raise AtSiteOnly(f"site {self.site_name}: at-site data {self.relpath} is read only inside "
                                 "lunarhub.at_site(entry, fn), whose results the site meters")
        try:
            with open(path, "rb"):
                pass
        except PermissionError:
            raise NotEntitled(f"site {self.site_name}: this job may not read {self.relpath} from the site's disk "
                              f"(jobs read what their owner is entitled to at {self.site_name})") from None
        except FileNotFoundError:
            raise CatalogError(f"site {self.site_name}: entry {self.name}: {self.relpath} is not on the "
                               f"site's disk ({path})") from None
        return {}

    def read(self, **kwargs: Any) -> xr.DataArray | xr.Dataset | pd.DataFrame:
        """Lazy read: xarray (dask-backed) for rasters and cubes, pandas for tables."""
        headers = self._check()
        if self.driver == "csv":
            # A table is read whole: its sha256 names exactly the version read.
            import pandas as pd

            with self._fileobj() as f:
                raw = f.read()
            record_lineage(self, headers, "sha256:" + hashlib.sha256(raw).hexdigest())
            return pd.read_csv(io.BytesIO(raw), **{**self.args.get("csv_kwargs", {}), **kwargs})
        record_lineage(self, headers)
        if self.driver == "rasterio":
            return self._raster(**kwargs)
        if self.driver == "zarr":
            import xarray as xr

            local = self.local_path()
            so = {"headers": self.site.headers()} if self.remote and self.site and local is None else {}
            return xr.open_zarr(str(local or self.href), storage_options=so or None, consolidated=True, decode_coords="all",
                                **kwargs)
        if self.driver == "netcdf":
            import xarray as xr

            return xr.open_dataset(self._fileobj(), engine="h5netcdf", chunks={}, **kwargs)
        raise CatalogError(f"{self.catalog_file}: entry {self.name}: driver {self.driver!r} is not supported")

    to_dask = read

    def _fileobj(self) -> OpenFile:
        import fsspec

        local = self.local_path()
        if local is not None:
            return fsspec.open(str(local), "rb")
        so = {"headers": self.site.headers()} if self.remote and self.site else {}
        return fsspec.open(self.href, "rb", **so)

    def _gdal_path(self) -> str:
        local = self.local_path()
        if local is not None:
            return str(local)
        if self.remote:
            if self.site is not None:
                _gdal_site_auth(self.site)
            return "/vsicurl/" + self.href
        return self.href

    def _raster(self, chunks: Any = None, overview_level: int | None = None, **kwargs: Any) -> xr.DataArray:
        import rasterio
        import rioxarray

        opts = {"chunks": chunks or self.args.get("chunks") or True,
                "mask_and_scale": self.args.get("mask_and_scale", False)}
        if overview_level is not None:
            opts["overview_level"] = overview_level
        try:
            # One raster per entry: never the list open_rasterio gives for a file of subdatasets.
            da = cast("xr.DataArray", rioxarray.open_rasterio(self._gdal_path(), **opts, **kwargs))
        except rasterio.errors.RasterioIOError as exc:
            raise CatalogError(f"entry {self.name}: cannot open {self.href}: {exc}") from None
        if da.rio.crs is None:
            raise CatalogError(f"entry {self.name}: {self.href} has no CRS")
        # GeoTIFF keys cannot name an IAU projected CRS (polar stereographic comes back
        # unnamed but equivalent): crs_code() identifies it; record the catalog's code.
        da.attrs["crs_code"] = crs_code(da.rio.crs) or str(self.metadata.get("crs"))
        if self.metadata.get("units"):
            da.attrs.setdefault("units", self.metadata["units"])
        da.attrs["lunarhub_entry"] = f"{self.metadata.get('site')}/{self.name}"
        return da

    def read_bbox(self, lon_min: float, lat_min: float, lon_max: float, lat_max: float,
                  crs: str = GEOGRAPHIC, **kwargs: Any) -> xr.DataArray:
        """The part of a raster inside a lon/lat box (clear error if it lies outside)."""
        from rasterio.warp import transform_bounds
        from rioxarray.exceptions import NoDataInBounds, OneDimensionalRaster

        da = cast("xr.DataArray", self.read(**kwargs))  # a raster entry's read() gives a DataArray
        left, bottom, right, top = transform_bounds(crs, da.rio.crs, lon_min, lat_min, lon_max, lat_max,
                                                    densify_pts=21)
        b = da.rio.bounds()
        if right <= b[0] or left >= b[2] or top <= b[1] or bottom >= b[3]:
            raise OutsideExtent(
                f"entry {self.name}: requested box {[lon_min, lat_min, lon_max, lat_max]} ({crs}) lies outside "
                f"its extent {self.metadata.get('extent', {}).get('bbox', list(b))}")
        try:
            clipped: xr.DataArray = da.rio.clip_box(left, bottom, right, top)
            return clipped
        except (NoDataInBounds, OneDimensionalRaster) as exc:
            raise OutsideExtent(f"entry {self.name}: requested box {[lon_min, lat_min, lon_max, lat_max]} "
                                f"holds no whole pixel: {exc}") from None


class SiteCatalog(Mapping[str, Entry]):
    def __init__(self, name: str, data: dict[str, Any], base: str, site: SiteAccess | None, source: str,
                 policies: set[str] | None = None):
        self.name = name
        self.metadata = data.get("metadata") or {}
        self.source = source
        self.base = base
        self.site = site
        self._all = {k: Entry(k, v, base, site, source) for k, v in (data.get("sources") or {}).items()}
        self.entries = {k: e for k, e in self._all.items()
                        if policies is None or e.metadata.get("policy") in policies or e.at_site_only}
        self.hidden = sorted(set(self._all) - set(self.entries))

    def __getitem__(self, key: str) -> Entry:
        if key in self.entries:
            return self.entries[key]
        if key in self._all:
            raise NotEntitled(f"site {self.name}: you are not entitled to {key!r} "
                              f"(policy {self._all[key].metadata.get('policy')!r})")
        raise KeyError(f"site {self.name} has no entry {key!r}; it has {sorted(self.entries)}")

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"<SiteCatalog {self.name} {self.source}: {sorted(self.entries)}>"


class RootCatalog(Mapping[str, SiteCatalog]):
    """Sites by name; a site that failed to load raises its error on access."""

    def __init__(self, sites: dict[str, SiteCatalog], errors: dict[str, CatalogError]):
        self.sites = sites
        self.errors = errors

    def __getitem__(self, key: str) -> SiteCatalog:
        if key in self.errors:
            raise self.errors[key]
        return self.sites[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.sites) + list(self.errors))

    def __len__(self) -> int:
        return len(self.sites) + len(self.errors)

    def walk(self) -> Iterator[tuple[str, Entry]]:
        for sname, sc in self.sites.items():
            for ename, e in sc.items():
                yield f"{sname}/{ename}", e

    def __repr__(self) -> str:
        down = f", unavailable: {sorted(self.errors)}" if self.errors else ""
        return f"<RootCatalog sites: {sorted(self.sites)}{down}>"


def _load_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise CatalogError(f"{source}: YAML error at {where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        raise CatalogError(f"{source}: not an intake catalog (no 'sources' mapping)")
    return data


def open_site(site: SiteAccess, filter_policies: bool = True) -> SiteCatalog:
    """Fetch and parse one site's own catalog.yaml."""
    href = f"{site.url}/catalog.yaml"
    _http_check(site, href, "the site catalog")
    r = requests.get(href, auth=site.auth, timeout=TIMEOUT)
    data = _load_yaml(r.content.decode("utf-8"), href)
    return SiteCatalog(site.name, data, site.url, site,
                       href, site.policies if filter_policies else None)


def open_catalog(environ: Mapping[str, str] | None = None, path: str | os.PathLike[str] | None = None) -> RootCatalog:
    """The federated catalog of every data site, with what this user may read.

    Without `path`: the sites named in the environment the hub injected. With
    `path` (a local root or site catalog): read the files directly (CI, operators).
    """
    if path is not None:
        return _open_local(Path(path))
    access = sites_from_env(environ)
    if not access:
        raise CatalogError("no data sites configured: LUNARHUB_SITES is not set (open_catalog() runs inside a "
                           "hub user's server; elsewhere pass path= or use intake.open_catalog(URL))")
    sites: dict[str, SiteCatalog] = {}
    errors: dict[str, CatalogError] = {}
    for name, site in access.items():
        try:
            sites[name] = open_site(site)
        except CatalogError as exc:
            errors[name] = exc
    return RootCatalog(sites, errors)


def _open_local(path: Path) -> RootCatalog:
    data = _load_yaml(path.read_text(encoding="utf-8"), str(path))
    base = str(path.parent)
    subs = {k: v for k, v in data["sources"].items() if (v or {}).get("driver") in CATALOG_DRIVERS}
    if not subs:
        name = (data.get("metadata") or {}).get("site", path.stem)
        return RootCatalog({name: SiteCatalog(name, data, base, None, str(path))}, {})
    out = {}
    for name, spec in subs.items():
        sub = Path(str(spec["args"]["path"]).replace("{{ CATALOG_DIR }}", base))
        out[name] = SiteCatalog(name, _load_yaml(sub.read_text(encoding="utf-8"), str(sub)), str(sub.parent),
                                None, str(sub))
    return RootCatalog(out, {})


# ---------------------------------------------------------------- validation


@dataclass
class Problem:
    file: str
    entry: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: entry {self.entry}: field {self.field}: {self.message}"


def crs_code(crs: Any) -> str | None:
    """AUTHORITY:CODE of a CRS, also for equivalent unnamed ones read from GeoTIFF keys."""
    from pyproj import CRS

    if hasattr(crs, "to_wkt"):
        # WKT2 keeps the IAU_2015 authority name; rasterio's default WKT1 says "IAU".
        try:
            crs = crs.to_wkt(version="WKT2_2019")
        except TypeError:
            crs = crs.to_wkt()
    c = CRS.from_user_input(crs)
    auth = c.to_authority() or c.to_authority(min_confidence=25)
    return ":".join(auth) if auth else None


def _check_entry(file: str, cat_site: str | None, name: str, e: Entry, open_data: bool) -> list[Problem]:
    out: list[Problem] = []

    def bad(fld: str, msg: str) -> None:
        out.append(Problem(file, name, fld, msg))

    if e.driver not in DRIVERS:
        bad("driver", f"unknown driver {e.driver!r} (use one of {sorted(DRIVERS)})")
    if not e.args.get("urlpath"):
        bad("args.urlpath", "missing")
    md = e.metadata
    for key in REQUIRED:
        if md.get(key) in (None, "", [], {}):
            bad(f"metadata.{key}", "missing")
    for key in ("title", "description"):
        val = md.get(key)
        if isinstance(val, dict):
            for lang in LANGS:
                if not val.get(lang):
                    bad(f"metadata.{key}.{lang}", "missing translation")
        elif val:
            bad(f"metadata.{key}", "must be a mapping with en, ru and zh")
    policy = md.get("policy")
    if policy and policy not in POLICIES:
        bad("metadata.policy", f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")
    elif policy and e.args.get("urlpath") and f"/{policy}/" not in str(e.args["urlpath"]):
        bad("args.urlpath", f"path is not under the {policy!r} folder, so the site would not enforce the policy")
    if cat_site and md.get("site") and md["site"] != cat_site:
        bad("metadata.site", f"{md['site']!r} but the catalog belongs to site {cat_site!r}")
    crs = md.get("crs")
    if crs:
        try:
            from pyproj import CRS

            CRS.from_user_input(crs)
        except Exception as exc:  # pyproj raises CRSError and friends
            bad("metadata.crs", f"not a CRS: {exc}")
    ext = md.get("extent")
    if ext is not None:
        bbox = ext.get("bbox") if isinstance(ext, dict) else None
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
            bad("metadata.extent.bbox", "needs [west, south, east, north]")
    if open_data and not out:
        out += _check_opens(file, name, e)
    return out


def _check_opens(file: str, name: str, e: Entry) -> list[Problem]:
    try:
        obj = e.read()
        if e.driver == "rasterio":
            if obj.rio.crs is None:
                return [Problem(file, name, "crs", "the data file has no CRS")]
            want = str(e.metadata.get("crs"))
            have = crs_code(obj.rio.crs)
            if have != want:
                return [Problem(file, name, "metadata.crs", f"{want} but the file says {have or obj.rio.crs}")]
            _ = obj.isel(x=slice(0, 1), y=slice(0, 1)).values  # one real read
        elif e.driver in ("zarr", "netcdf"):
            if not obj.data_vars:
                return [Problem(file, name, "data", "no data variables")]
        elif e.driver == "csv" and len(obj) == 0:
            return [Problem(file, name, "data", "empty table")]
    except Exception as exc:
        return [Problem(file, name, "args.urlpath", f"does not open: {type(exc).__name__}: {exc}")]
    return []


def validate(path: str | os.PathLike[str] | None = None, open_data: bool = True) -> list[Problem]:
    """Check every catalog at `path` (a file, or a folder's *.yaml): schema, the
    required metadata of every entry, policy, CRS, and that every entry opens."""
    p = Path(path) if path else ROOT_CATALOG.parent
    files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    if not files:
        return [Problem(str(p), "-", "-", "no catalog files found")]
    problems: list[Problem] = []
    for f in files:
        problems += _validate_file(f, open_data)
    return problems


def _validate_file(f: Path, open_data: bool) -> list[Problem]:
    file = str(f)
    if not f.exists():
        return [Problem(file, "-", "-", "file not found")]
    try:
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        return [Problem(file, "-", "(yaml)", f"YAML error at {where}: {getattr(exc, 'problem', exc)}")]
    if not isinstance(data, dict):
        return [Problem(file, "-", "(top level)", "expected a mapping with 'sources'")]
    sources = data.get("sources")
    if not isinstance(sources, dict) or not sources:
        return [Problem(file, "-", "sources", "missing or empty")]
    problems: list[Problem] = []
    cat_site = (data.get("metadata") or {}).get("site")
    base = str(f.parent)
    for name, spec in sources.items():
        if not isinstance(spec, dict):
            problems.append(Problem(file, name, "-", "entry must be a mapping"))
            continue
        if spec.get("driver") in CATALOG_DRIVERS:
            target = str((spec.get("args") or {}).get("path", "")).replace("{{ CATALOG_DIR }}", base)
            if not target or not Path(target).exists():
                problems.append(Problem(file, name, "args.path", f"referenced catalog {target!r} not found"))
            for key in ("title", "site"):
                if not (spec.get("metadata") or {}).get(key):
                    problems.append(Problem(file, name, f"metadata.{key}", "missing"))
            continue
        problems += _check_entry(file, cat_site, name, Entry(name, spec, base, None, file), open_data)
    # intake itself must accept the file (outside tools open it with intake.open_catalog).
    try:
        import intake

        cat = intake.open_catalog(file)
        missing = set(sources) - set(cat)
        if missing:
            problems.append(Problem(file, ",".join(sorted(missing)), "-", "intake did not load these entries"))
    except Exception as exc:
        problems.append(Problem(file, "-", "(intake)", f"intake.open_catalog fails: {exc}"))
    return problems


def timed_listing(cat: RootCatalog) -> dict[str, float]:
    """Seconds to list every entry's metadata, per site (for benchmarks)."""
    out = {}
    for name, sc in cat.sites.items():
        t = time.perf_counter()
        for e in sc.values():
            e.describe()
        out[name] = time.perf_counter() - t
    return out
