"""A light reviewer: does on the wire what a browser does to show a Panel dashboard,
without a browser's CPU cost (load tests, and checks that a dashboard really serves).

    page  GET the dashboard URL (hub cookies: the reviewer is logged in)
    js    GET every script and stylesheet the page names (a first visit: no cache)
    ws    open the Bokeh websocket with the session token from the page
    doc   PULL-DOC-REQ -> PULL-DOC-REPLY: the document with the plot's data

"first plot" here = the PULL-DOC-REPLY holding the plot's glyph has arrived; a
browser draws it from there (measured separately in Chromium, see
benchmarks/bench_dashboards.py). 30 of these in one asyncio loop cost the client a fraction
of a core, so what is measured is the server side: hub proxy, the dashboard's
hub-authenticated proxy and Panel.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

TOKEN_RE = re.compile(r'"token"\s*:\s*"([^"]+)"')
ASSET_RE = re.compile(r'<script[^>]*\bsrc="([^"]+)"|<link[^>]*\bhref="([^"]+\.css(?:\?[^"]*)?)"')


@dataclass
class Visit:
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    asset_bytes: int = 0
    assets: list[str] = field(default_factory=list)
    doc_bytes: int = 0
    has_plot: bool = False


def _frame(msgtype: str) -> list[str]:
    header = {"msgid": uuid.uuid4().hex, "msgtype": msgtype}
    return [json.dumps(header), "{}", "{}"]


async def _read_message(ws) -> tuple[dict, str, int]:
    """One Bokeh protocol message: header, metadata, content, then (ref, payload) per buffer."""
    header_raw = await ws.read_message()
    if header_raw is None:
        raise ConnectionError(f"websocket closed by the server ({ws.close_code} {ws.close_reason})")
    header = json.loads(header_raw)
    await ws.read_message()  # metadata
    content = await ws.read_message()
    size = len(content)
    for _ in range(2 * int(header.get("num_buffers", 0))):
        part = await ws.read_message()
        size += len(part or b"")
    return header, content, size


async def visit(url: str, cookies: str = "", origin: str = "", fetch_assets: bool = True,
                timeout: float = 300, headers: dict[str, str] | None = None) -> Visit:
    """Open `url` like a reviewer's first visit; return the timings. Raises on any failure.
    `cookies`: the browser's Cookie header (a logged-in reviewer); `headers`: any other
    request headers (e.g. `Authorization: token …` for a hub API token)."""
    client = AsyncHTTPClient(max_clients=64)
    headers = dict(headers or {})
    if cookies:
        headers["Cookie"] = cookies
    out = Visit()
    t0 = time.perf_counter()
    page = await client.fetch(HTTPRequest(url, headers=headers, request_timeout=timeout,
                                          follow_redirects=False))
    html = page.body.decode()
    match = TOKEN_RE.search(html)
    if not match:
        raise RuntimeError(f"{url}: no Bokeh session token in the page (HTTP {page.code}): {html[:200]!r}")
    out.phases["page"] = time.perf_counter() - t0
    # Relative to the page, as a browser resolves them.
    out.assets = [urljoin(url, a or b) for a, b in ASSET_RE.findall(html)]
    if fetch_assets:
        for full in dict.fromkeys(out.assets):
            if urlsplit(full).netloc != urlsplit(url).netloc:
                continue  # nothing leaves the machine: a CDN link would fail in a browser too
            r = await client.fetch(HTTPRequest(full, headers=headers, request_timeout=timeout))
            out.asset_bytes += len(r.body)
        out.phases["assets"] = time.perf_counter() - t0
    parts = urlsplit(url)
    ws_url = f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}{parts.path.rstrip('/')}/ws"
    ws_headers = dict(headers)
    ws_headers["Origin"] = origin or f"{parts.scheme}://{parts.netloc}"
    ws = await websocket_connect(HTTPRequest(ws_url, headers=ws_headers, request_timeout=timeout),
                                 subprotocols=["bokeh", match.group(1)], max_message_size=512 * 2**20)
    try:
        header, _, _ = await _read_message(ws)
        if header.get("msgtype") != "ACK":
            raise RuntimeError(f"expected ACK from the Bokeh server, got {header.get('msgtype')}")
        out.phases["ws"] = time.perf_counter() - t0
        for part in _frame("PULL-DOC-REQ"):
            await ws.write_message(part)
        while True:
            header, content, size = await _read_message(ws)
            if header.get("msgtype") == "PULL-DOC-REPLY":
                break
            if header.get("msgtype") == "ERROR":
                raise RuntimeError(f"Bokeh server error: {content[:300]}")
        out.doc_bytes = size
        out.has_plot = '"GlyphRenderer"' in content
        out.seconds = out.phases["doc"] = time.perf_counter() - t0
    finally:
        ws.close()
    return out
