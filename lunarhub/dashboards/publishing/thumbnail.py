"""Gallery thumbnails: drawn at publish time without a browser, checked again by the service.

`make(roots, namespace)` runs in the validation child (as the publisher, after the
cells ran): it finds the first pane of the servable objects that matplotlib can draw
and returns a small PNG. `check_png(data)` runs in the gallery service, which must
not trust what a client sent it. Module-level imports stay light: the service
imports this module but never Panel, HoloViews or matplotlib.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 480, 300
MAX_MADE = 200 * 2**10  # what we send
MAX_ACCEPTED = 512 * 2**10  # what the service takes from a client
MAX_SIDE = 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class NotAThumbnail(ValueError):
    """The service refuses these bytes as a thumbnail; str() says why."""


# ---------------------------------------------------------------- service side


def check_png(data: bytes) -> bytes:
    """A clean re-encoding of `data` if it is a sane PNG, else NotAThumbnail.

    Re-encoding from the decoded pixels drops whatever else a file may carry
    (text chunks, trailing bytes, a polyglot payload): only pixels reach the store.
    """
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_ACCEPTED:
        raise NotAThumbnail(f"{len(data)} bytes (more than {MAX_ACCEPTED})")
    if not data.startswith(PNG_MAGIC):
        raise NotAThumbnail("not a PNG (wrong signature)")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            w, h = img.size  # from the header: checked before the pixels are decoded
            if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
                raise NotAThumbnail(f"{w}x{h} px (each side must be 1..{MAX_SIDE})")
            img.load()
            pixels = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
    except NotAThumbnail:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise NotAThumbnail(f"does not decode as PNG ({type(exc).__name__})") from None
    out = io.BytesIO()
    pixels.save(out, format="PNG", optimize=True)
    if out.tell() > MAX_ACCEPTED:
        raise NotAThumbnail("too large once re-encoded")
    return out.getvalue()


# ---------------------------------------------------------------- publisher side


def servable_objects(roots: Iterable[Any], namespace: Mapping[str, Any]) -> list[Any]:
    """The Panel objects behind the document's roots, in document order."""
    from panel.io.state import state
    from panel.viewable import Viewable

    found: list[Any] = []
    for root in roots:
        # Panel's own root registry (private, but the one place that maps a Bokeh root
        # back to its Panel object); roots like Location/BrowserInfo are not in it.
        entry = getattr(state, "_views", {}).get(root.ref["id"])
        if entry is not None and entry[0] not in found:
            found.append(entry[0])
    if not found:
        # Should that registry change: the notebook's own variables that were served.
        docs = {getattr(r, "document", None) for r in roots} - {None}
        found = [v for v in namespace.values()
                 if isinstance(v, Viewable) and docs & set(getattr(v, "_documents", {}))]
    return found


def make(roots: Iterable[Any], namespace: Mapping[str, Any]) -> bytes | None:
    """PNG bytes of the first drawable pane, or None when there is none."""
    for obj in servable_objects(list(roots), namespace):
        for pane in obj.select():
            figure = _figure_of(pane)
            if figure is not None:
                return _fit(figure)
    return None


def _figure_of(pane: Any) -> Any:
    """A matplotlib Figure (or a PIL image) for a drawable pane, else None."""
    import panel as pn

    if isinstance(pane, pn.pane.HoloViews) and pane.object is not None:
        return _render_holoviews(pane.object)
    if isinstance(pane, pn.pane.Matplotlib) and pane.object is not None:
        return pane.object
    if isinstance(pane, (pn.pane.PNG, pn.pane.JPG)) and pane.object is not None:
        return _image(pane.object)
    if isinstance(pane, pn.param.ParamFunction) and (
            pane.defer_load or (pane.defer_load is None and pn.config.defer_load)
            or not any(isinstance(p, pn.pane.PaneBase) and p is not pane for p in pane.select())):
        # Not rendered yet (deferred loading shows a placeholder until the page loads):
        # evaluate at the widgets' current values.
        try:
            value = pane.eval(pane.object)
        except Exception:  # noqa: BLE001 - the notebook's own function; the pane is simply skipped
            return None
        return _figure_of(pn.panel(value)) if value is not None else None
    return None


def _render_holoviews(obj: Any) -> Any:
    import holoviews as hv
    import holoviews.plotting.mpl  # noqa: F401 - registers the matplotlib renderer, keeps the current backend

    # The notebook styled it for Bokeh. Two things carry over: the colormap (it makes a map
    # recognisable) and the plot's shape (matplotlib would otherwise keep the data's aspect:
    # a 360x30 degree band becomes a sliver of the thumbnail).
    if isinstance(obj, hv.HoloMap) and not isinstance(obj, hv.DynamicMap) and len(obj):
        obj = obj.last  # matplotlib would make an animation of it, not a figure
    backend = hv.Store.current_backend
    mpl: dict[str, Any] = {}
    try:
        cmap = hv.Store.lookup_options(backend, obj, "style").kwargs.get("cmap")
        if cmap is not None:
            mpl["cmap"] = cmap
        plot = hv.Store.lookup_options(backend, obj, "plot").kwargs
        width, height = plot.get("width") or WIDTH, plot.get("height") or HEIGHT
        mpl["aspect"] = max(0.5, min(4.0, width / height))
        obj = obj.opts(backend="matplotlib", clone=True, **mpl)
    except Exception:  # noqa: BLE001 - best effort: default colours and shape still make a thumbnail
        pass
    return hv.render(obj, backend="matplotlib")


def _image(source: Any) -> Any:
    from PIL import Image

    if isinstance(source, bytes):
        return Image.open(io.BytesIO(source))
    if isinstance(source, (str, Path)) and Path(source).is_file():
        return Image.open(source)
    return None  # URLs: validation does not fetch from the network on the publisher's behalf


def _fit(figure: Any) -> bytes:
    """WIDTH x HEIGHT on white, the drawing scaled to fit (no distortion), < MAX_MADE bytes."""
    from PIL import Image

    if isinstance(figure, Image.Image):
        drawing = figure.convert("RGB")
    else:
        buf = io.BytesIO()
        # savefig picks the Agg canvas for PNG whatever backend made the figure: no display needed.
        figure.savefig(buf, format="png", dpi=150, bbox_inches="tight", facecolor="white")
        _close(figure)
        buf.seek(0)
        drawing = Image.open(buf).convert("RGB")
    drawing.thumbnail((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (WIDTH, HEIGHT), "white")
    canvas.paste(drawing, ((WIDTH - drawing.width) // 2, (HEIGHT - drawing.height) // 2))
    out = io.BytesIO()
    canvas.save(out, format="PNG", optimize=True)
    if out.tell() > MAX_MADE:
        # Noisy data compresses badly; a 256-colour palette still reads fine at this size.
        out = io.BytesIO()
        canvas.quantize(256).save(out, format="PNG", optimize=True)
    if out.tell() > MAX_MADE:
        raise ValueError(f"thumbnail is {out.tell()} bytes even with 256 colours")
    return out.getvalue()


def _close(figure: Any) -> None:
    try:
        import matplotlib.pyplot as plt

        plt.close(figure)
    except Exception:  # noqa: BLE001 - a figure not managed by pyplot needs no closing
        pass
