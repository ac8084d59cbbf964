"""The operators' dashboard (Panel; `panel serve` behind lunarhub.operations.dashboard's proxy).
Language: `?lang=en|ru|zh`, else the one chosen on the hub's pages, else the browser's. Refreshes every 15 s."""

from __future__ import annotations

import pandas as pd
import panel as pn

from lunarhub import config
from lunarhub.config.languages import COOKIE
from lunarhub.operations import dashboard_data as data

pn.extension("tabulator")


def _lang() -> str:
    query = dict(pn.state.session_args or {})
    accept = (pn.state.headers or {}).get("Accept-Language")
    cookie = (pn.state.cookies or {}).get(COOKIE)
    return data.language(query, accept if isinstance(accept, str) else None,
                         cookie if isinstance(cookie, str) else None)


def _table(rows: list[dict], columns: list[str], lang: str) -> pn.viewable.Viewable:
    if not rows:
        return pn.pane.Markdown(f"*{data.text('none', lang)}*")
    frame = pd.DataFrame(rows)[columns].rename(columns={c: data.text(c, lang) for c in columns})
    return pn.widgets.Tabulator(frame, show_index=False, disabled=True, height=min(400, 40 + 32 * len(rows)),
                                sizing_mode="stretch_width")


def _figures(snap: data.Snapshot, lang: str) -> pn.viewable.Viewable:
    def number(name: str, value: float | None, fmt: str = "{value:.0f}") -> pn.indicators.Number:
        return pn.indicators.Number(name=name, value=0 if value is None else value, format=fmt if value is not None
                                    else "–", font_size="28pt", title_size="11pt")

    active = [number(f"{data.text('active', lang)} {p}", snap.active.get(p)) for p in ("24h", "7d", "30d")]
    spawn = [number(f"{data.text('spawn', lang)} {q}", snap.spawn.get(q), "{value:.1f}") for q in ("p50", "p99")]
    return pn.Row(*active, *spawn, number(data.text("failures", lang), snap.failures))


def build() -> pn.viewable.Viewable:
    d = config.load()
    lang = _lang()
    body = pn.Column(sizing_mode="stretch_width")

    def refresh() -> None:
        snap = data.gather(d)
        alerts = [f"- **{a['alert']}** ({a['severity']}): {a['summary']}" for a in snap.alerts]
        problems = [f"- {data.text('unavailable', lang)}: {p}" for p in snap.problems]
        body.objects = [
            _figures(snap, lang),
            pn.pane.Markdown(f"### {data.text('alerts', lang)}\n" + ("\n".join(alerts) or data.text("none", lang))
                             + ("\n\n" + "\n".join(problems) if problems else "")),
            pn.pane.Markdown(f"### {data.text('per_group', lang)}"),
            _table(snap.per_group, ["group", "servers", "clusters"], lang),
            pn.pane.Markdown(f"### {data.text('reads', lang)}"),
            _table(snap.reads, ["site", "dataset", "institution", "requests"], lang),
            pn.pane.Markdown(f"### {data.text('egress', lang)}"),
            _table(snap.egress, ["site", "institution", "bytes"], lang),
        ]

    refresh()
    pn.state.add_periodic_callback(refresh, period=15_000)
    return pn.Column(pn.pane.Markdown(f"# {data.text('title', lang)}"), body,
                     sizing_mode="stretch_width")


build().servable(title="lunarhub operator dashboard")
