"""Gallery thumbnails: drawn at validation without a browser, never a reason to refuse a
publish, and checked again (not trusted) by the gallery service."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from test_dashboards_validate import nb

from lunarhub.dashboards.gallery.api import ListApi
from lunarhub.dashboards.publishing import thumbnail
from lunarhub.dashboards.publishing.validate import validate

# The example dashboard's pattern (notebooks/dashboards/lola_explorer.ipynb) on numpy data:
# widgets -> pn.bind -> hv.Image styled for Bokeh.
HV_CELLS = (
    "import holoviews as hv\nimport numpy as np\nimport panel as pn\npn.extension()\nhv.extension('bokeh')",
    "k = pn.widgets.IntSlider(name='k', start=1, end=5, value=3)\n"
    "cmap = pn.widgets.Select(options=['magma', 'viridis'], value='magma')\n"
    "def region(k, cmap_name):\n"
    "    x = np.linspace(0, 1, 240)\n"
    "    z = np.sin(k * 6 * x)[None, :] * np.cos(k * 4 * x)[:, None]\n"
    "    return hv.Image(z).opts(cmap=cmap_name, colorbar=True, width=720, height=420, tools=['hover'])",
    "pn.Column('## Heights', pn.Row(k, cmap), pn.panel(pn.bind(region, k, cmap))).servable(title='x')",
)


def decoded(png: bytes) -> Image.Image:
    assert png.startswith(thumbnail.PNG_MAGIC)
    img = Image.open(io.BytesIO(png))
    img.load()
    return img.convert("RGB")


def rgb(img: Image.Image, **bounds: tuple[int, int]) -> np.ndarray:
    """Which pixels have each channel within [low, high)."""
    px = np.asarray(img, dtype=int).reshape(-1, 3)
    ok = np.ones(len(px), dtype=bool)
    for i, channel in enumerate("rgb"):
        low, high = bounds[channel]
        ok &= (px[:, i] >= low) & (px[:, i] < high)
    return ok


def test_a_holoviews_dashboard_gets_a_drawn_thumbnail(tmp_path):
    ok = validate(nb(tmp_path, *HV_CELLS), timeout=120)
    assert ok.thumbnail_error is None
    assert ok.thumbnail is not None and len(ok.thumbnail) < 200 * 2**10
    img = decoded(ok.thumbnail)
    assert img.size == (thumbnail.WIDTH, thumbnail.HEIGHT)
    colours = img.getcolors(maxcolors=2**16)
    assert colours is None or len(colours) > 50, "a flat or nearly empty picture"
    # The Bokeh colormap is carried over: magma's red-purple mid-tones (no grey, no viridis colour).
    assert (rgb(img, r=(150, 256), g=(0, 90), b=(90, 150))).any(), "colormap lost?"
    # What the publisher sends passes the service's own check.
    assert decoded(thumbnail.check_png(ok.thumbnail)).size == img.size


def test_a_matplotlib_pane_is_drawn_too(tmp_path):
    cells = ("import panel as pn\nfrom matplotlib.figure import Figure\npn.extension()",
             "fig = Figure(figsize=(4, 3))\nax = fig.add_subplot()\nax.fill_between([0, 1, 2], [0, 2, 1], color='red')\n"
             "pn.Column('# md pane first', pn.pane.Matplotlib(fig)).servable()")
    ok = validate(nb(tmp_path, *cells), timeout=120)
    assert ok.thumbnail_error is None and ok.thumbnail is not None
    img = decoded(ok.thumbnail)
    assert img.size == (thumbnail.WIDTH, thumbnail.HEIGHT)
    assert (rgb(img, r=(200, 256), g=(0, 60), b=(0, 60))).any(), "the red fill is missing"


def test_nothing_drawable_means_no_thumbnail_and_still_valid(tmp_path):
    cells = ("import panel as pn\npn.extension()",
             "s = pn.widgets.IntSlider(start=0, end=3)\n"
             "pn.Column(pn.pane.Markdown('# Only text'), pn.bind(lambda v: f'value {v}', s)).servable()")
    ok = validate(nb(tmp_path, *cells), timeout=120)
    assert ok.roots >= 1
    assert ok.thumbnail is None and ok.thumbnail_error is None


# The thumbnail step is broken from inside the notebook (the child imports the same module),
# so the real parent/child protocol is exercised.
BREAK = "import lunarhub.dashboards.publishing.thumbnail as _t\n"


@pytest.mark.parametrize("sabotage,reason,grace", [
    ("def _fit(figure):\n    raise RuntimeError('boom\\nsecond line')\n_t._fit = _fit",
     "RuntimeError: boom second line", 3),
    ("import os\n_t.make = lambda *a: os._exit(9)", "ended the Python process (exit status 9)", 3),
    # Never finishes: any grace ends it, so the shortest (the others need theirs to fail on their own).
    ("import time\n_t.make = lambda *a: time.sleep(600)", "did not finish in time", 0.5),
])
def test_a_failing_thumbnail_never_refuses_the_publish(tmp_path, sabotage, reason, grace):
    # The hanging one is ended by the thumbnail's own grace ("did not finish in time"), not by the
    # publish timeout, which would have refused the publish instead of returning it.
    ok = validate(nb(tmp_path, *HV_CELLS, BREAK + sabotage), timeout=120, thumbnail_grace=grace)
    assert ok.roots >= 1 and ok.thumbnail is None
    assert ok.thumbnail_error is not None and reason in ok.thumbnail_error and "\n" not in ok.thumbnail_error


def png(size: tuple[int, int] = (48, 30), **info: str) -> bytes:
    meta = PngImagePlugin.PngInfo()
    for k, v in info.items():
        meta.add_text(k, v)
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, format="PNG", pnginfo=meta)
    return out.getvalue()


def test_service_check_accepts_a_png_and_keeps_only_its_pixels():
    sent = png(payload="<script>alert(1)</script>")
    assert b"alert" in sent
    kept = thumbnail.check_png(sent)
    assert b"alert" not in kept
    img = decoded(kept)
    assert img.size == (48, 30) and img.getpixel((5, 5)) == (10, 120, 200)


@pytest.mark.parametrize("data,why", [
    (b"<html><script>alert(1)</script></html>", "wrong signature"),
    (b"\xff\xd8\xff\xe0" + b"JFIF" * 10, "wrong signature"),
    (thumbnail.PNG_MAGIC + b"\x00" * 100, "does not decode"),
    (png()[:60], "does not decode"),
    (png((2000, 10)), "each side"),
    (thumbnail.PNG_MAGIC + b"\x00" * (thumbnail.MAX_ACCEPTED + 1), "more than"),
])
def test_service_check_refuses_what_is_not_a_sane_png(data, why):
    with pytest.raises(thumbnail.NotAThumbnail, match=why):
        thumbnail.check_png(data)


def test_service_refuses_a_bad_thumbnail_without_refusing_the_publish():
    assert ListApi.checked_thumbnail("o", "s", None) == (None, None)
    good, refused = ListApi.checked_thumbnail("o", "s", base64.b64encode(png()).decode())
    assert refused is None and decoded(good).size == (48, 30)
    for sent in ("not base64!", 12, base64.b64encode(b"GIF89a....").decode(), "A" * (1 << 20)):
        kept, refused = ListApi.checked_thumbnail("o", "s", sent)
        assert kept is None and refused.startswith("refused by the gallery"), sent


def session_doc():
    """A Bokeh session document like the validation child's (in this process, for speed),
    and its session context, which the caller keeps alive (the document holds a weakref)."""
    import types
    import weakref

    from bokeh.application import Application
    from bokeh.document import Document
    from bokeh.server.contexts import ApplicationContext, BokehSessionContext

    doc = Document()
    ctx = BokehSessionContext("test", ApplicationContext(Application()).server_context, doc)
    ctx._request = types.SimpleNamespace(arguments={}, cookies={}, headers={})
    doc._session_context = weakref.ref(ctx)
    return doc, ctx


def test_deferred_function_is_evaluated_and_objects_found_without_panels_registry(monkeypatch):
    import holoviews as hv
    import panel as pn
    from panel.io.state import set_curdoc, state

    hv.extension("bokeh")
    doc, _ctx = session_doc()
    with set_curdoc(doc):
        k = pn.widgets.IntSlider(start=1, end=3, value=2)
        # defer_load: until a browser loads the page, the pane holds a text placeholder.
        col = pn.Column(k, pn.panel(pn.bind(lambda v: hv.Curve(np.arange(10) ** v), k), defer_load=True))
        col.servable()
        assert not col.select(pn.pane.HoloViews)
        png = thumbnail.make(doc.roots, {})
        assert png is not None and decoded(png).size == (thumbnail.WIDTH, thumbnail.HEIGHT)
        monkeypatch.setattr(state, "_views", {})
        assert thumbnail.servable_objects(doc.roots, {"col": col, "k": k, "other": pn.Row()}) == [col]
