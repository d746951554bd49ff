"""How ``rainbridge components NAME`` shows a component's parameters: name, a readable type,
the default (or "required"), the constraints and the meaning (the field's description), read
from the component's pydantic ``Params``; ``--json`` prints its JSON schema instead."""

from __future__ import annotations

import json
import re
import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from rainbridge.components.base import Component

#: a cell wider than this does not widen its column for every row (it overflows its own)
MAX_CELL = 34
#: the meaning, the last column, wraps at this width
MAX_MEANING = 60


@dataclass(frozen=True)
class ParamRow:
    """One parameter as the catalogue prints it."""

    name: str
    type: str
    default: str
    constraints: str
    meaning: str


def _key_word(description: str) -> str:
    """What a mapping's keys are, as its description says (the type alone says "str")."""
    words = description.lower()
    if "party" in words or "parties" in words:
        return "party"
    if "column" in words:
        return "column"
    return "str"


def readable_type(annotation: Any, description: str = "", top: bool = True) -> str:
    """``int``, ``float``, ``str``, ``bool``, ``one of a|b|c``, ``list[str]``,
    ``{party: list[str]}``, ``{field: type, …}`` for a nested model; ``None`` is left out of
    a union (the default says when it is the default)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        choices = "|".join(str(a) for a in args)
        return f"one of {choices}" if top else choices
    if origin in (Union, types.UnionType):
        parts = [readable_type(a, description, top) for a in args if a is not type(None)]
        return " | ".join(parts) if parts else "none"
    if origin is list:
        return f"list[{readable_type(args[0], description, False)}]" if args else "list"
    if origin is dict:
        value = readable_type(args[1], description, False) if len(args) == 2 else "any"
        return f"{{{_key_word(description)}: {value}}}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        inner = ", ".join(
            f"{name}: {readable_type(f.annotation, f.description or '', False)}"
            for name, f in annotation.model_fields.items()
        )
        return f"{{{inner}}}"
    if annotation is type(None):
        return "none"
    return str(getattr(annotation, "__name__", annotation))


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def default_text(field: FieldInfo) -> str:
    """The default as a job file would write it, or ``required``."""
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return _show(field.default_factory())  # type: ignore[call-arg]
    return _show(field.default)


def constraints_text(field: FieldInfo) -> str:
    """The bounds pydantic checks: ``≥ 1, ≤ 1000``, ``> 0``, ``≥ 1 items``."""
    out: list[str] = []
    unit = "characters" if field.annotation is str else "items"
    for m in field.metadata:
        if isinstance(m, at.Ge):
            out.append(f"≥ {m.ge}")
        elif isinstance(m, at.Gt):
            out.append(f"> {m.gt}")
        elif isinstance(m, at.Le):
            out.append(f"≤ {m.le}")
        elif isinstance(m, at.Lt):
            out.append(f"< {m.lt}")
        elif isinstance(m, at.MinLen):
            out.append(f"≥ {m.min_length} {unit}")
        elif isinstance(m, at.MaxLen):
            out.append(f"≤ {m.max_length} {unit}")
        elif isinstance(m, at.MultipleOf):
            out.append(f"multiple of {m.multiple_of}")
    return ", ".join(out)


def parameter_rows(params: type[BaseModel]) -> list[ParamRow]:
    """Every parameter of a component's ``Params``, in declaration order."""
    return [
        ParamRow(
            name=f.alias or name,
            type=readable_type(f.annotation, f.description or ""),
            default=default_text(f),
            constraints=constraints_text(f),
            meaning=f.description or "",
        )
        for name, f in params.model_fields.items()
    ]


def wrap_cell(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters where it can break: after a space,
    a ``|`` or a comma, so that a long type or list stays readable in its column."""
    pieces = re.findall(r"[^ |,]+[|,]? ?|[|,] ?| ", text)
    lines: list[str] = []
    line = ""
    for piece in pieces:
        if line and len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    lines.append(line.rstrip())
    return lines


def describe_component(component: Component) -> list[str]:
    """The lines ``rainbridge components NAME`` prints: the summary, a table of the
    parameters (a long cell continues on the next lines of its column), the outputs."""
    rows = parameter_rows(component.Params)
    header = ["parameter", "type", "default", "constraints", "meaning"]
    cells = [header] + [[r.name, r.type, r.default, r.constraints, r.meaning] for r in rows]
    widths = [min(MAX_CELL, max(len(c[i]) for c in cells)) for i in range(len(header))]
    lines = [f"{component.type_name}: {component.summary}", ""]
    for c in cells:
        wrapped = [wrap_cell(cell, widths[i]) for i, cell in enumerate(c[:-1])]
        wrapped.append(wrap_cell(c[-1], MAX_MEANING))
        for k in range(max(len(w) for w in wrapped)):
            parts = [(w[k] if k < len(w) else "") for w in wrapped]
            line = "  ".join(p.ljust(widths[i]) for i, p in enumerate(parts[:-1]))
            lines.append(f"{line}  {parts[-1]}".rstrip())
    lines += ["", f"outputs: {', '.join(component.outputs)}"]
    return lines
