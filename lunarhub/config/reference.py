"""docs/config-reference.md, generated from the deployment model.

The model's field descriptions are the one place the deployment file is
documented; this renders them (key path, type, default, description) so the
reference cannot drift from what `parse()` accepts. tests/unit/test_config_reference.py
fails when the committed file is stale: regenerate it with
`python -m lunarhub.config.reference -o docs/config-reference.md`
(or `lunarhub config reference`, the same `render()`).
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lunarhub.config.model import Deployment

HEADER = """\
# Deployment file reference

<!-- Generated from lunarhub/config/model.py by lunarhub.config.reference; do not edit by hand. -->

Every key of the deployment file (`hub/lunarhub.yaml`, or the file given by `--config` /
`$LUNARHUB_CONFIG`). Relative paths resolve against the file's folder. `<name>` stands for a
key you choose (a group, a user, a site...). Unknown keys are refused, with their line.
Regenerate with `python -m lunarhub.config.reference -o docs/config-reference.md`.
"""


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    description: str


def _unwrap_optional(annotation: typing.Any) -> tuple[typing.Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return annotation, False


def _model_of(annotation: typing.Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def type_name(annotation: typing.Any) -> str:
    """How a reader of the YAML sees a field's type."""
    annotation, optional = _unwrap_optional(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        name = "one of " + ", ".join(f"`{a}`" for a in args)
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        name = "one of " + ", ".join(f"`{m.value}`" for m in annotation)
    elif origin is list:
        name = f"list of {type_name(args[0])}"
    elif origin is dict:
        name = f"mapping of name to {type_name(args[1])}"
    elif _model_of(annotation):
        name = f"mapping ({annotation.__name__})"
    elif origin in (typing.Union, types.UnionType):
        name = " or ".join(type_name(a) for a in args)
    else:
        name = {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))
    return name + (" or null" if optional else "")


def _bounds(info: FieldInfo) -> str:
    words = []
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            words.append(f"≥ {m.ge}")
        elif isinstance(m, annotated_types.Gt):
            words.append(f"> {m.gt}")
        elif isinstance(m, annotated_types.Le):
            words.append(f"≤ {m.le}")
        elif isinstance(m, annotated_types.Lt):
            words.append(f"< {m.lt}")
        elif isinstance(m, annotated_types.MinLen):
            words.append(f"at least {m.min_length}")
    return f" ({', '.join(words)})" if words else ""


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "*required*"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if value is None or value is PydanticUndefined:
        return "—"
    if isinstance(value, BaseModel):
        return "(below)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, dict):
        value = {k: (v.model_dump() if isinstance(v, BaseModel) else v) for k, v in value.items()}
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _description(info: FieldInfo) -> str:
    text = info.description or ""
    if info.examples:
        text += " Example: " + ", ".join(f"`{json.dumps(e, ensure_ascii=False)}`" for e in info.examples)
    return text.strip()


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[Row]:
    """Every key under `model`, depth first, in the model's order."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        yield Row(key, type_name(info.annotation) + _bounds(info), _default(info), _description(info))
        inner, _ = _unwrap_optional(info.annotation)
        if typing.get_origin(inner) is dict:
            inner, sub = typing.get_args(inner)[1], f"{key}.<name>."
        else:
            sub = f"{key}."
        if (nested := _model_of(inner)) is not None:
            yield from rows(nested, sub)


def missing_descriptions(model: type[BaseModel] = Deployment) -> list[str]:
    """Key paths of fields without a description (the test keeps this empty)."""
    return [r.key for r in rows(model) if not r.description]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(items: Sequence[Row]) -> list[str]:
    out = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    out += [f"| `{r.key}` | {_cell(r.type)} | {_cell(r.default)} | {_cell(r.description)} |" for r in items]
    return out


def render() -> str:
    """The whole reference as Markdown (what `lunarhub config reference` prints)."""
    all_rows = list(rows(Deployment))
    top = [r for r in all_rows if "." not in r.key and _section_model(r.key) is None]
    lines = [HEADER, "## Top level", "", *_table(top), ""]
    for name, info in Deployment.model_fields.items():
        section = _section_model(name)
        if section is None:
            continue
        intro, doc = _description(info), " ".join((section.__doc__ or "").split())
        if doc.rstrip(".") not in intro:
            intro = f"{intro} {doc}".strip()
        lines += [f"## `{name}`", "", intro, ""]
        lines += _table([r for r in all_rows if r.key == name or r.key.startswith(name + ".")]) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _section_model(name: str) -> type[BaseModel] | None:
    inner, _ = _unwrap_optional(Deployment.model_fields[name].annotation)
    if typing.get_origin(inner) is dict:
        inner = typing.get_args(inner)[1]
    return _model_of(inner)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lunarhub.config.reference", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    text = render()
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
