"""What runs inside the dask-gateway-server process (configured by lunarhub.compute.gateway).

- Backends: LocalBackend (workers as the user's system account) with upstream's
  `setup_working_directory` bug fixed (lunarhub.upstream.dask_gateway_workdir), and
  UnsafeLocalBackend for single-account mode;
  both enforce the deployment's per-group limits and per-user cluster count.
- A front on the hub service port: dashboards need a hub login and belong to the
  cluster's owner only (upstream serves them unauthenticated); everything else is
  passed to the gateway's own HTTP proxy. The front routes on the decoded, normalised
  path and forwards only that path, so what it checks is what the proxy serves; a
  browser may call it only from the origin it is served on or the hub's.
- Cleanup: clusters of a user whose last server stopped are shut down.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from dask_gateway_server import models
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.local import LocalBackend, LocalClusterConfig, UnsafeLocalBackend
from dask_gateway_server.options import Float, Integer, Options
from tornado import httpclient, httputil, web, websocket
from tornado.httpserver import HTTPServer
from traitlets import Float as FloatTrait
from traitlets import Integer as IntegerTrait
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from lunarhub import config
from lunarhub.compute import gateway
from lunarhub.config import roster
from lunarhub.platform import cgroups
from lunarhub.upstream.dask_gateway_preexec import PreexecPerProcess
from lunarhub.upstream.dask_gateway_workdir import FixedWorkingDirectory

ACTIVE = (models.ClusterStatus.PENDING, models.ClusterStatus.RUNNING)
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
               "upgrade", "proxy-authorization", "te", "trailer"}


class LunarClusterConfig(LocalClusterConfig):
    initial_workers = IntegerTrait(0, min=0, help="Workers to start with (scaled once running)",
                                   config=True)


class LunarBackendMixin(LoggingConfigurable):
    """Limits, dashboard front and cleanup shared by both local backends."""

    deployment_file = Unicode(help="The deployment YAML").tag(config=True)
    front_address = Unicode(help="host:port of the hub service (dashboard auth front)").tag(config=True)
    hub_api_url = Unicode(help="The hub's API URL").tag(config=True)
    hub_api_token = Unicode(help="The gateway service's hub token").tag(config=True)
    cookie_secret_file = Unicode(help="Cookie secret of the front's hub login").tag(config=True)
    cleanup_period = FloatTrait(5.0, help="Seconds between checks for stopped user servers").tag(config=True)
    service_name = Unicode(gateway.SERVICE, help="The hub service this gateway is (a site's own: "
                                                 "lunarhub.compute.site_gateway)").tag(config=True)

    # -- deployment, re-read per request so `lunarhub users` changes apply at once

    def deployment(self) -> config.Deployment:
        return roster.effective(config.load(self.deployment_file or None))

    def get_env(self, cluster: Any) -> dict[str, str]:
        """The process's environment plus the owner's data-site credentials, computed now from the
        deployment rather than stored with the cluster (the database keeps its config in plain JSON)."""
        env = super().get_env(cluster)  # type: ignore[misc]
        env.update(gateway.worker_environment(self.deployment(), cluster.username))
        return env

    # -- limits

    def _options_for(self, user: Any) -> Options:
        d = self.deployment()
        fields = []
        for f in gateway.option_fields(gateway.user_limits(d, user.name)):
            kind = Integer if f["kind"] == "int" else Float
            fields.append(kind(f["name"], default=f["default"], min=f["min"], label=f["label"]))

        def handler(options: Any, user: Any) -> dict[str, Any]:
            return gateway.cluster_overrides(d, user.name, options.worker_cores, options.worker_memory,
                                             options.workers)

        return Options(*fields, handler=handler)

    async def start_cluster(self, user: Any, cluster_options: dict) -> str:
        d = self.deployment()
        active = self.db.list_clusters(username=user.name, statuses=ACTIVE)
        why = gateway.refusal_for_new_cluster(d, user.name, len(active))
        if why:
            self.log.info("Refused a cluster for %s: %s", user.name, why)
            raise PublicException(why)
        return await super().start_cluster(user, cluster_options)

    async def _cluster_to_running(self, cluster: Any) -> None:
        await super()._cluster_to_running(cluster)
        n = int(cluster.config.get("initial_workers") or 0)
        if n:
            asyncio.ensure_future(self._initial_scale(cluster.name, n))

    async def _initial_scale(self, name: str, count: int) -> None:
        try:
            model = await self.get_cluster(name)
            await self.forward_message_to_scheduler(model, {"op": "scale", "count": count})
        except Exception:  # noqa: BLE001 - the cluster runs; the user can still scale by hand
            self.log.warning("Initial scale of cluster %s to %d failed", name, count, exc_info=True)

    # -- lifecycle

    async def setup(self, app: Any) -> None:
        self.cluster_options = self._options_for
        await super().setup(app)
        self._front = start_front(self)
        self._cleanup_task = asyncio.ensure_future(self._cleanup_loop())

    async def cleanup(self) -> None:
        task = getattr(self, "_cleanup_task", None)
        if task:
            task.cancel()
        front = getattr(self, "_front", None)
        if front:
            front.stop()
        await super().cleanup()

    # -- cleanup of clusters whose owner's server stopped

    async def _running_server_users(self) -> set[str] | None:
        from lunarhub.platform.hubclient import AsyncHubAPI

        try:
            users = await AsyncHubAPI(self.hub_api_url, self.hub_api_token, timeout=10).users()
        except Exception as exc:  # noqa: BLE001 - hub restarting or refusing: try again next round
            self.log.debug("hub user list unavailable: %s", exc)
            return None
        return {u["name"] for u in users
                if any(s.get("ready") or s.get("pending") for s in (u.get("servers") or {}).values())}

    async def _cleanup_loop(self) -> None:
        # Only a server that *stops* ends its owner's clusters: clusters made with a
        # token from outside a server (scripts, CI) are left to the idle timeout.
        before: set[str] | None = None
        while True:
            now = await self._running_server_users()
            if now is not None:
                if before is not None:
                    for username in sorted(before - now):
                        await self.stop_user_clusters(username, "their server stopped")
                before = now
            await asyncio.sleep(self.cleanup_period)

    async def stop_user_clusters(self, username: str, why: str) -> list[str]:
        names = [c.name for c in self.db.list_clusters(username=username, statuses=ACTIVE)]
        for name in names:
            self.log.info("Stopping cluster %s of %s: %s", name, username, why)
            await self.stop_cluster(name)
        return names


class ProcessGroups(PreexecPerProcess, LoggingConfigurable):
    """Each scheduler and worker of a cluster in a cgroup of its own, limited to the cluster's
    ``scheduler_memory``/``worker_memory`` and cores (``hub.resource_limits: cgroups``), so a worker
    over its memory is OOM-killed alone and one user's cluster cannot take the machine.

    The process joins its group in the child before LocalBackend's preexec drops root, so the
    user cannot move out (the step reaches the child through lunarhub.upstream.dask_gateway_preexec).
    Groups are named ``lunarhub-gateway-<port>/<cluster>--<process>`` and
    removed (what is left in them killed) when the worker or the cluster stops."""

    def _groups_on(self) -> tuple[bool, str]:
        d = self.deployment()  # type: ignore[attr-defined]
        return (d.hub.resource_limits == "cgroups" and os.geteuid() == 0,
                f"lunarhub-gateway-{d.services.dask_gateway.port}")

    def _group(self, prefix: str, cluster_name: str, process: str) -> cgroups.Group:
        return cgroups.detect().group(f"{prefix}/{cluster_name}--{process}")

    def process_preexec(self, cluster: Any, name: str) -> Callable[[], None] | None:
        on, prefix = self._groups_on()
        if not on:
            return None
        worker = name.startswith("worker-")
        cfg = cluster.config
        group = self._group(prefix, cluster.name, name)
        group.create(int(cfg.worker_memory if worker else cfg.scheduler_memory),
                     float(cfg.worker_cores if worker else cfg.scheduler_cores))
        files = group.procs_files()
        return lambda: cgroups.join_files(files)

    def _release(self, cluster_name: str, process: str | None) -> None:
        on, prefix = self._groups_on()
        if not on:
            return
        hierarchy = cgroups.detect()
        base = hierarchy.group(prefix).memory_dir
        names = ([f"{cluster_name}--{process}"] if process else
                 [p.name for p in base.glob(f"{cluster_name}--*") if p.is_dir()] if base.is_dir() else [])
        for name in names:
            if not hierarchy.group(f"{prefix}/{name}").remove():
                self.log.warning("cgroup %s/%s: processes left that would not stop", prefix, name)

    async def do_stop_worker(self, worker: Any) -> None:
        await super().do_stop_worker(worker)  # type: ignore[misc]
        self._release(worker.cluster.name, f"worker-{worker.name}")

    async def do_stop_cluster(self, cluster: Any) -> None:
        await super().do_stop_cluster(cluster)  # type: ignore[misc]
        self._release(cluster.name, None)


class LunarLocalBackend(LunarBackendMixin, ProcessGroups, FixedWorkingDirectory, LocalBackend):
    """Workers run as the user's own system account (the gateway runs as root); the
    working directory is set up by lunarhub.upstream.dask_gateway_workdir (upstream chowns "/")."""


class LunarUnsafeLocalBackend(LunarBackendMixin, UnsafeLocalBackend):
    """single-account mode: no accounts to switch to, so no isolation between users."""


# ---------------------------------------------------------------- dashboard front

# RFC 3986 pchar minus "%": what stays literal when a normalised path is encoded again.
PATH_SAFE = "/:@!$&'()*+,;=-._~"


class UnparsablePath(ValueError):
    """A request path the front refuses rather than guess how the gateway's proxy reads it."""


def normalise_path(raw: str) -> str:
    """The path as the gateway's proxy routes it: percent-decoded once (`%63lusters`,
    `clusters%2F<name>` are clusters), `.` and `..` segments resolved, duplicate slashes folded.

    Raises UnparsablePath for whatever another reader could take differently: a '%' left
    after decoding (double encoding), backslashes, control characters, raw non-ASCII, bytes
    that are not UTF-8, a '..' above the root.
    """
    if not raw.startswith("/"):
        raise UnparsablePath("the path must start with '/'")
    if not raw.isascii():
        raise UnparsablePath("the path holds raw non-ASCII bytes (percent-encode them)")
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise UnparsablePath("the path's percent-escapes are not UTF-8") from None
    if "%" in decoded:
        raise UnparsablePath("the path is encoded twice or holds a stray '%'")
    if "\\" in decoded or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded):
        raise UnparsablePath("the path holds a backslash or a control character")
    parts: list[str] = []
    segments = decoded.split("/")[1:]
    for seg in segments:
        if seg in ("", "."):
            continue
        if seg == "..":
            if not parts:
                raise UnparsablePath("the path climbs above the root ('..')")
            parts.pop()
            continue
        parts.append(seg)
    out = "/" + "/".join(parts)
    if parts and segments[-1] in ("", ".", ".."):
        out += "/"
    return out


def origin_allowed(origin: str, host: str | None, public_url: str) -> bool:
    """Whether a browser page at `origin` may use the front: only a page served on the host the
    request came to (configurable-http-proxy forwards the Host) or on the hub's public URL."""
    parsed = urlsplit(origin)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return False  # includes "null" (sandboxed frames, opaque origins)
    allowed = {urlsplit(public_url).netloc.lower()}
    if host:
        allowed.add(host.lower())
    return parsed.netloc.lower() in allowed


class FrontApplication(web.Application):
    """Routes on the normalised path and rewrites the request to it, so the owner check and
    the gateway's proxy (which decodes percent-escapes) see the same path."""

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        try:
            path = quote(normalise_path(request.path), safe=PATH_SAFE)
        except UnparsablePath as exc:
            return self.get_handler_delegate(request, Refused, {"status": 400,
                                                                "message": f"refused request path: {exc}"})
        request.path = path
        request.uri = path + (f"?{request.query}" if request.query else "")
        return super().find_handler(request, **kwargs)


def start_front(backend: LunarBackendMixin) -> HTTPServer:
    from jupyterhub.services.auth import HubOAuth

    prefix = f"/services/{backend.service_name}"
    d = backend.deployment()
    # The hub registers a service's redirect URI on the service's host when subdomains are on
    # (jupyterhub Service.oauth_redirect_uri); the one asked for must match it exactly.
    service_host = d.public_url if d.hub.subdomain_host is not False else ""
    # The singleton: HubOAuthenticated handlers (the callback too) call HubOAuth.instance().
    hub_auth = HubOAuth.instance(
        api_token=backend.hub_api_token,
        api_url=backend.hub_api_url,
        oauth_client_id=f"service-{backend.service_name}",
        base_url=prefix + "/",
        oauth_redirect_uri=f"{service_host}{prefix}/oauth_callback",
        hub_prefix="/hub/",
        access_scopes={"access:services", f"access:services!service={backend.service_name}"},
        cache_max_age=5,
    )
    secret = Path(backend.cookie_secret_file).read_text().strip().encode()
    proxy_host, _, proxy_port = backend.proxy.address.rpartition(":")
    settings = {
        "hub_auth": hub_auth,
        "cookie_secret": secret,
        "backend": backend,
        "upstream": f"http://{proxy_host or '127.0.0.1'}:{proxy_port}",
        "login_url": hub_auth.login_url,
        "prefix": prefix,
    }
    app = FrontApplication(front_routes(prefix), public_url=d.public_url, **settings)
    host, _, port = backend.front_address.rpartition(":")
    server = HTTPServer(app, xheaders=True)
    server.listen(int(port), host or "127.0.0.1")
    backend.log.info("Dashboard auth front listening at http://%s", backend.front_address)
    return server


def front_routes(prefix: str) -> list[Any]:
    from jupyterhub.services.auth import HubOAuthCallbackHandler

    # Any name: an unknown one gets the owner check's 403, never the pass-through.
    cl = r"/clusters/(?P<cluster>[^/]+)"
    return [
        (prefix + "/oauth_callback", HubOAuthCallbackHandler),
        (prefix + cl + r"(?P<path>/.*/ws)", DashboardWebSocket),
        (prefix + cl + r"(?P<path>/.*)?", DashboardProxy),
        (prefix + r"/clusters(?:/.*)?", Refused, {"status": 404, "message": "name a cluster: clusters/<name>/"}),
        (prefix + r"/lunarhub/egress", EgressReport),
        (prefix + r"(?P<path>/.*)?", PassThrough),
    ]


def _copy_response(handler: web.RequestHandler, resp: httpclient.HTTPResponse,
                   rewrite_location: str | None = None) -> None:
    handler.set_status(resp.code, resp.reason)
    handler._headers.clear()  # drop tornado's defaults (content type, server)
    for name, value in resp.headers.get_all():
        if name.lower() in HOP_HEADERS:
            continue
        if name.lower() == "location" and rewrite_location and value.startswith("/"):
            value = rewrite_location + value
        handler.add_header(name, value)
    if resp.body:
        handler.write(resp.body)


async def _forward(handler: web.RequestHandler, url: str, rewrite_location: str | None = None) -> None:
    req = handler.request
    headers = {k: v for k, v in req.headers.get_all() if k.lower() not in HOP_HEADERS | {"host"}}
    body = req.body if req.method in ("POST", "PUT", "PATCH") else None
    try:
        resp = await httpclient.AsyncHTTPClient().fetch(
            url, method=req.method, headers=headers, body=body, follow_redirects=False,
            raise_error=False, request_timeout=120, allow_nonstandard_methods=True,
        )
    except OSError as exc:
        raise web.HTTPError(502, f"upstream unavailable: {exc}") from None
    if resp.code == 599:
        raise web.HTTPError(502, f"upstream unavailable: {resp.error}")
    _copy_response(handler, resp, rewrite_location)


class _FrontChecks:
    """What every front handler does first: a browser page from another origin is refused
    (the gateway's own cookie would otherwise act for whoever opens that page); errors are
    plain text that says why."""

    def prepare(self: Any) -> None:
        origin = self.request.headers.get("Origin")  # browsers send it; API clients need not
        if origin is not None and not self.origin_ok(origin):
            raise web.HTTPError(403, f"requests from the page origin {origin} are refused: "
                                     f"open the dashboard from {self.settings['public_url']}")

    def origin_ok(self: Any, origin: str) -> bool:
        return origin_allowed(origin, self.request.headers.get("Host"), self.settings["public_url"])

    def write_error(self: Any, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}: {getattr(exc, 'log_message', None) or self._reason}\n")


class Refused(_FrontChecks, web.RequestHandler):
    def initialize(self, status: int, message: str) -> None:
        self.status, self.message = status, message

    def prepare(self) -> None:
        raise web.HTTPError(self.status, self.message)


class EgressReport(_FrontChecks, web.RequestHandler):
    """A site cluster's scheduler reports what it sent or refused (lunarhub.compute.egress); the
    site's audit log is written here, as root. Authenticated by the cluster's own API token, and
    only about that cluster's owner."""

    def check_xsrf_cookie(self) -> None:
        pass  # token-authenticated, never a browser's

    async def post(self) -> None:
        import hmac
        import json

        from lunarhub.compute import site_gateway

        backend = self.settings["backend"]
        site = getattr(backend, "lunarhub_site", None)
        if site is None:
            raise web.HTTPError(404, "this gateway meters no at-site data")
        try:
            body = json.loads(self.request.body)
            name, datasets, refused = str(body["cluster"]), dict(body["datasets"]), bool(body["refused"])
            sizes = {str(k): int(v) for k, v in datasets.items()}
        except (ValueError, KeyError, TypeError):
            raise web.HTTPError(400, "expected JSON {cluster, datasets: {path: bytes}, refused}") from None
        auth = self.request.headers.get("Authorization", "")
        cluster = backend.db.get_cluster(name)
        if cluster is None or not auth.startswith("token ") or \
                not hmac.compare_digest(auth.removeprefix("token ").encode(), cluster.token.encode()):
            raise web.HTTPError(403, "not this cluster's token")
        site_gateway.record_egress(backend.deployment(), site, cluster.username, cluster.name, sizes, refused)
        self.set_status(204)


class PassThrough(_FrontChecks, web.RequestHandler):
    """The gateway API: it authenticates users itself (JupyterHubAuthenticator)."""

    def check_xsrf_cookie(self) -> None:
        pass  # token-authenticated API, checked by the gateway

    async def _any(self, path: str | None = None) -> None:
        await _forward(self, self.settings["upstream"] + self.request.uri)

    get = post = put = delete = patch = head = _any  # type: ignore[assignment]


class _OwnerOnly:
    """Hub login (cookie or token), then the cluster must belong to that user."""

    async def owner_check(self: Any, cluster_name: str) -> str | None:
        from jupyterhub.services.auth import UserNotAllowed

        model = await self.hub_auth.get_user(self, sync=False)
        if model:
            try:
                model = self.check_hub_user(model)
            except UserNotAllowed:
                raise web.HTTPError(403, "no access to the dask-gateway service") from None
        self._hub_auth_user_cache = model
        if not model:
            if self.request.method == "GET" and not self.request.headers.get("Authorization"):
                self.redirect(self.get_login_url())
                return None
            raise web.HTTPError(401, "log in to the hub first")
        cluster = self.settings["backend"].db.get_cluster(cluster_name)
        # Same answer for "no such cluster" and "someone else's": names are not to be probed.
        if cluster is None or cluster.username != model["name"] or model.get("kind", "user") != "user":
            raise web.HTTPError(403, f"cluster {cluster_name} is not yours")
        if not cluster.dashboard_address:
            raise web.HTTPError(503, f"cluster {cluster_name} has no dashboard (yet)")
        return cluster.dashboard_address


def _hub_authenticated_base():
    from jupyterhub.services.auth import HubOAuthenticated

    return HubOAuthenticated


class DashboardProxy(_FrontChecks, _OwnerOnly, _hub_authenticated_base(), web.RequestHandler):
    async def get(self, cluster: str, path: str | None = None) -> None:
        target = await self.owner_check(cluster)
        if target is None:
            return
        query = f"?{self.request.query}" if self.request.query else ""
        await _forward(self, f"{target}{quote(path or '/', safe=PATH_SAFE)}{query}",
                       rewrite_location=f"{self.settings['prefix']}/clusters/{cluster}")

    head = get

    def check_xsrf_cookie(self) -> None:
        pass


class DashboardWebSocket(_FrontChecks, _OwnerOnly, _hub_authenticated_base(), websocket.WebSocketHandler):
    """Bokeh's websocket, bridged after the same owner check."""

    async def get(self, cluster: str, path: str) -> None:  # type: ignore[override]
        target = await self.owner_check(cluster)
        if target is None:
            return
        query = f"?{self.request.query}" if self.request.query else ""
        url = re.sub(r"^http", "ws", target) + quote(path, safe=PATH_SAFE) + query
        headers = {}
        if "Sec-WebSocket-Protocol" in self.request.headers:
            headers["Sec-WebSocket-Protocol"] = self.request.headers["Sec-WebSocket-Protocol"]
        try:
            self.upstream = await websocket.websocket_connect(
                httpclient.HTTPRequest(url, headers=headers),
                on_message_callback=self._from_upstream,
                subprotocols=self._subprotocols(),
            )
        except Exception as exc:  # noqa: BLE001
            raise web.HTTPError(502, f"dashboard websocket unavailable: {exc}") from None
        await super().get(cluster, path)

    def _subprotocols(self) -> list[str] | None:
        raw = self.request.headers.get("Sec-WebSocket-Protocol")
        return [p.strip() for p in raw.split(",")] if raw else None

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        up = getattr(self, "upstream", None)
        chosen = up.selected_subprotocol if up is not None else None
        return chosen or (subprotocols[0] if subprotocols else None)

    def check_origin(self, origin: str) -> bool:
        # A page elsewhere would otherwise open the owner's dashboard with the owner's cookies.
        return self.origin_ok(origin)

    def _from_upstream(self, message: str | bytes | None) -> None:
        if message is None:
            self.close()
            return
        try:
            self.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            self.upstream.close()

    async def on_message(self, message: str | bytes) -> None:
        await self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        up = getattr(self, "upstream", None)
        if up is not None:
            up.close()
