"""Label-driven readers for PDS4 binary tables (the Chang'e-4 LPR product).

pds4_tools 1.4 cannot read the CNSA LPR 2B labels: they declare 4- and 6-byte
fields with data_type `UnsignedByte` (a 1-byte type), which it mis-broadcasts.
So the table layout is taken from the XML label here and turned into a numpy
structured dtype: every offset, type, length and repetition comes from the
label, none is written in this code. A data file whose size disagrees with the
label is refused (a truncated download must not become garbage numbers).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lunarhub.lunar import MOON_RADIUS_M

# PDS4 data_type -> numpy scalar type (PDS4 Standards Reference, table 4.2).
PDS4_TYPES: dict[str, str] = {
    "SignedByte": "i1",
    "UnsignedByte": "u1",
    "SignedLSB2": "<i2",
    "SignedLSB4": "<i4",
    "SignedLSB8": "<i8",
    "UnsignedLSB2": "<u2",
    "UnsignedLSB4": "<u4",
    "UnsignedLSB8": "<u8",
    "SignedMSB2": ">i2",
    "SignedMSB4": ">i4",
    "SignedMSB8": ">i8",
    "UnsignedMSB2": ">u2",
    "UnsignedMSB4": ">u4",
    "UnsignedMSB8": ">u8",
    "IEEE754LSBSingle": "<f4",
    "IEEE754LSBDouble": "<f8",
    "IEEE754MSBSingle": ">f4",
    "IEEE754MSBDouble": ">f8",
}

class PDSError(Exception):
    """A PDS product that cannot be read as its label describes."""

@dataclass
class FieldSpec:
    name: str
    location: int  # 0-based byte offset in the record
    dtype: str
    length: int
    unit: str | None
    description: str
    repetitions: int = 1  # >1 for fields inside a Group_Field_Binary

    def numpy_dtype(self) -> np.dtype | tuple:
        base = np.dtype(self.dtype)
        # A field longer than its type (the LPR labels' 4-byte 'UnsignedByte')
        # is kept as a byte array; the caller decodes it from its description.
        per_item = self.length // base.itemsize if self.length > base.itemsize else 1
        count = per_item * self.repetitions
        return (base, (count,)) if count > 1 else base

@dataclass
class TableSpec:
    data_file: str
    file_size: int | None
    offset: int
    records: int
    record_length: int
    fields: list[FieldSpec]
    label: dict[str, str] = field(default_factory=dict)

    def dtype(self) -> np.dtype:
        return np.dtype(
            {
                "names": [f.name for f in self.fields],
                "formats": [f.numpy_dtype() for f in self.fields],
                "offsets": [f.location for f in self.fields],
                "itemsize": self.record_length,
            }
        )

def _ns(tag: str) -> str:
    return tag.split("}", 1)[-1]

def _child(el: ET.Element, name: str) -> ET.Element | None:
    for c in el:
        if _ns(c.tag) == name:
            return c
    return None

def _text(el: ET.Element, name: str, default: str | None = None) -> str | None:
    c = _child(el, name)
    return c.text.strip() if c is not None and c.text is not None else default

def _walk(el: ET.Element, name: str):
    return (e for e in el.iter() if _ns(e.tag) == name)

def _field(el: ET.Element, base: int, repetitions: int = 1) -> FieldSpec:
    name = _text(el, "name") or "?"
    dtype_name = _text(el, "data_type") or ""
    if dtype_name not in PDS4_TYPES:
        raise PDSError(f"field {name}: unsupported PDS4 data_type {dtype_name!r}")
    return FieldSpec(
        name=name,
        # field_location is 1-based (PDS4), relative to the record or group.
        location=base + int(_text(el, "field_location") or "1") - 1,
        dtype=PDS4_TYPES[dtype_name],
        length=int(_text(el, "field_length") or "0"),
        unit=_text(el, "unit"),
        description=_text(el, "description", "") or "",
        repetitions=repetitions,
    )

def parse_table_label(label_path: str | Path) -> TableSpec:
    """The first Table_Binary of a PDS4 label, as offsets and numpy types."""
    root = ET.parse(label_path).getroot()
    fa = next(_walk(root, "File_Area_Observational"), None)
    if fa is None:
        raise PDSError(f"{label_path}: no File_Area_Observational")
    f = _child(fa, "File")
    table = _child(fa, "Table_Binary")
    if f is None or table is None:
        raise PDSError(f"{label_path}: no File/Table_Binary")
    rec = _child(table, "Record_Binary")
    assert rec is not None
    fields: list[FieldSpec] = []
    for el in rec:
        tag = _ns(el.tag)
        if tag == "Field_Binary":
            fields.append(_field(el, 0))
        elif tag == "Group_Field_Binary":
            # The LPR echo: one field repeated 8192 times at group_location.
            base = int(_text(el, "group_location") or "1") - 1
            reps = int(_text(el, "repetitions") or "1")
            inner = [c for c in el if _ns(c.tag) == "Field_Binary"]
            if len(inner) != 1:
                raise PDSError(f"{label_path}: groups with {len(inner)} fields are not supported")
            fields.append(_field(inner[0], base, reps))
    size = _text(f, "file_size")
    info = {}
    for key in ("product_id", "instrument_name", "product_level", "sequence_id", "start_date_time",
                "stop_date_time", "sampling_interval", "central_frequency", "working_bandwidth"):
        val = next((e.text.strip() for e in _walk(root, key) if e.text), None)
        if val:
            info[key] = val
    lander = next(_walk(root, "Lander_Location"), None)
    if lander is not None:
        info["lander_longitude"] = _text(lander, "longitude") or ""
        info["lander_latitude"] = _text(lander, "latitude") or ""
    return TableSpec(
        data_file=_text(f, "file_name") or "",
        file_size=int(size) if size else None,
        offset=int(_text(table, "offset") or "0"),
        records=int(_text(table, "records") or "0"),
        record_length=int(_text(rec, "record_length") or "0"),
        fields=fields,
        label=info,
    )

def read_table(label_path: str | Path, data_path: str | Path | None = None) -> tuple[TableSpec, np.ndarray]:
    """Read the binary table the label describes; refuse a file of the wrong size."""
    label_path = Path(label_path)
    spec = parse_table_label(label_path)
    data_path = Path(data_path) if data_path else label_path.with_name(spec.data_file)
    actual = data_path.stat().st_size
    needed = spec.offset + spec.records * spec.record_length
    if spec.file_size is not None and actual != spec.file_size:
        raise PDSError(
            f"{data_path}: {actual} bytes but the label {label_path.name} says {spec.file_size} "
            "(truncated or corrupt download?)"
        )
    if actual < needed:
        raise PDSError(f"{data_path}: {actual} bytes, the table needs {needed}")
    data = np.fromfile(data_path, dtype=spec.dtype(), count=spec.records, offset=spec.offset)
    return spec, data

# CE-4 LPR TIME: 4 bytes of seconds + 2 bytes of milliseconds (big-endian, per the
# field description) since 2009-12-31T16:00:00 UTC.
LPR_EPOCH = datetime(2009, 12, 31, 16, 0, 0, tzinfo=UTC)

def lpr_times(raw: np.ndarray) -> np.ndarray:
    b = raw.astype(np.uint64)
    seconds = (b[:, 0] << 24) | (b[:, 1] << 16) | (b[:, 2] << 8) | b[:, 3]
    millis = (b[:, 4] << 8) | b[:, 5]
    epoch = np.datetime64(LPR_EPOCH.replace(tzinfo=None), "ms")
    return epoch + (seconds * 1000 + millis).astype("timedelta64[ms]")

def lpr_to_xarray(label_path: str | Path, data_path: str | Path | None = None):
    """The LPR radargram as an xarray Dataset (trace x sample) with rover positions."""
    import xarray as xr

    spec, data = read_table(label_path, data_path)
    by_name = {f.name: f for f in spec.fields}
    interval = float(spec.label.get("sampling_interval", "nan"))
    echo = data["ECHO_DATA"].astype("float32")
    n_samples = echo.shape[1]
    ds = xr.Dataset(
        {
            "echo": (("trace", "sample"), echo, {"long_name": "LPR echo amplitude (calibrated, level 2B)",
                                                 "units": "1"}),
            "velocity": ("trace", data["VELOCITY"].astype("float32"), {"units": by_name["VELOCITY"].unit}),
            "x_north": ("trace", data["XPOSITION"].astype("float32"),
                        {"units": "m", "long_name": "rover position north of the sequence reference point"}),
            "y_east": ("trace", data["YPOSITION"].astype("float32"),
                       {"units": "m", "long_name": "rover position east of the sequence reference point"}),
            "z_down": ("trace", data["ZPOSITION"].astype("float32"),
                       {"units": "m", "long_name": "rover position down from the sequence reference point"}),
            "quality": ("trace", data["QUALITY_STATE"].astype("uint8")),
        },
        coords={
            "trace": np.arange(len(data)),
            "time": ("trace", lpr_times(data["TIME"])),
            "sample": np.arange(n_samples),
            "twt_ns": ("sample", (np.arange(n_samples) * interval).astype("float32"),
                       {"units": "ns", "long_name": "two-way travel time"}),
        },
        attrs={k: v for k, v in spec.label.items()},
    )
    return ds

def lander_offset_to_lonlat(
    north_m: np.ndarray, east_m: np.ndarray, lon0: float, lat0: float, radius_m: float = MOON_RADIUS_M
) -> tuple[np.ndarray, np.ndarray]:
    """Local tangent plane at (lon0, lat0) -> planetocentric lon/lat on the lunar sphere.

    Exact enough for km-scale traverses: the error of the small-angle mapping at
    1.2 km from the lander is below a millimetre.
    """
    north_m = np.asarray(north_m, dtype="float64")
    east_m = np.asarray(east_m, dtype="float64")
    lat = lat0 + np.degrees(north_m / radius_m)
    lon = lon0 + np.degrees(east_m / (radius_m * np.cos(np.radians(lat0))))
    return lon, lat

