"""The job format: parties, components, their inputs, parameters and outputs.

A job is a small DAG of components written in YAML or JSON (see docs/JOBS.md)::

    name: align-customers
    parties: [bank, telecom]
    components:
      - id: psi
        type: psi
        inputs:
          bank: {dataset: customers, id: customer_id}
          telecom: {dataset: subscribers, id: phone_hash}
        params: {curve: curve25519}
        outputs:
          intersection:
            receivers: [bank]
            format: parquet
            columns: {bank: [age, income]}

A malformed file is refused with a :class:`~rainbridge.errors.JobSpecError` that names the
line and the field at fault.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from rainbridge.components.spec import NAME_PATTERN as _NAME
from rainbridge.components.spec import ComponentSpec, InputRef, OutputSpec, _Strict
from rainbridge.errors import JobSpecError

__all__ = [
    "ComponentSpec",
    "InputRef",
    "JobSpec",
    "JobSpecProblem",
    "OutputSpec",
    "load_job",
    "parse_job",
]

MAX_JOB_BYTES = 1 << 20


class JobSpecProblem(JobSpecError):
    """A cross-field problem found after the schema check; ``loc`` points at the field."""

    def __init__(self, message: str, loc: tuple[Any, ...]) -> None:
        super().__init__(message)
        self.loc = loc


class JobSpec(_Strict):
    """A whole job as submitted."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    parties: list[str] = Field(min_length=1)
    components: list[ComponentSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _short_inputs(cls, data: Any) -> Any:
        """``inputs: COMPONENT.OUTPUT`` is every receiver of that earlier output, each
        ``{from: COMPONENT.OUTPUT}``; a party's input written ``COMPONENT.OUTPUT`` is
        ``{from: COMPONENT.OUTPUT}`` (the aligned rows are named once, by the PSI)."""
        comps = data.get("components") if isinstance(data, dict) else None
        if not isinstance(comps, list):
            return data
        receivers: dict[str, list[str]] = {}
        out: list[Any] = []
        for c in comps:
            if isinstance(c, dict):
                inputs = c.get("inputs")
                if isinstance(inputs, str):
                    got = receivers.get(inputs)
                    if got is None:
                        raise JobSpecProblem(
                            f"{inputs!r} is not an output of an earlier component",
                            ("components", len(out), "inputs"),
                        )
                    c = {**c, "inputs": {p: {"from": inputs} for p in got}}
                elif isinstance(inputs, dict):
                    c = {**c, "inputs": {
                        p: {"from": v} if isinstance(v, str) else v for p, v in inputs.items()
                    }}  # fmt: skip
                outputs = c.get("outputs")
                if isinstance(c.get("id"), str) and isinstance(outputs, dict):
                    for name, o in outputs.items():
                        if isinstance(o, dict) and isinstance(o.get("receivers"), list):
                            receivers[f"{c['id']}.{name}"] = [str(r) for r in o["receivers"]]
            out.append(c)
        return {**data, "components": out}

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        # Raised as JobSpecError (not ValueError) so the location survives pydantic.
        def bad(msg: str, *loc: Any) -> JobSpecProblem:
            return JobSpecProblem(msg, loc)

        if len(set(self.parties)) != len(self.parties):
            raise bad("a party is named twice", "parties")
        for p in self.parties:
            if not re.match(_NAME, p):
                raise bad(f"{p!r} is not a valid party name", "parties")
        seen: dict[str, ComponentSpec] = {}
        for i, c in enumerate(self.components):
            at = ("components", i)
            if c.id in seen:
                raise bad(f"component id {c.id!r} is used twice", *at, "id")
            for party, ref in c.inputs.items():
                if party not in self.parties:
                    raise bad(f"input party {party!r} is not in parties", *at, "inputs", party)
                if ref.from_ is not None:
                    src, _, out_name = ref.from_.partition(".")
                    if src not in seen or out_name not in seen[src].outputs:
                        raise bad(
                            f"{ref.from_!r} is not an output of an earlier component",
                            *at,
                            "inputs",
                            party,
                            "from",
                        )
                    if party not in seen[src].outputs[out_name].receivers:
                        raise bad(
                            f"party {party!r} does not receive {ref.from_!r}",
                            *at,
                            "inputs",
                            party,
                            "from",
                        )
            for name, out in c.outputs.items():
                for r in out.receivers:
                    if r not in c.inputs:
                        raise bad(
                            f"receiver {r!r} takes no part in component {c.id!r}",
                            *at,
                            "outputs",
                            name,
                            "receivers",
                        )
                for r in out.columns:
                    if r not in out.receivers:
                        raise bad(
                            f"columns are listed for {r!r}, which does not receive {name!r}",
                            *at,
                            "outputs",
                            name,
                            "columns",
                            r,
                        )
            seen[c.id] = c
        return self

    def datasets_of(self, party: str) -> set[str]:
        """Names of the registered datasets this job reads at ``party``."""
        return {
            ref.dataset
            for c in self.components
            for p, ref in c.inputs.items()
            if p == party and ref.dataset is not None
        }

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=False)

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """SHA-256 of the canonical JSON form: what every party agrees to run."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (the deepest one that exists)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key] if key < len(node.value) else None
            if node is not None:
                line = node.start_mark.line + 1
        else:
            break
        if node is None:
            break
    return line


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for k in loc:
        if isinstance(k, int):
            out += f"[{k}]"
        elif k in ("function-after", "model-after") or str(k).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(k)
    return out or "(top level)"


def parse_job(text: str, source: str = "<job>") -> JobSpec:
    """Parse and validate a job from YAML or JSON text.

    Raises
    ------
    JobSpecError
        With ``source:line: field: problem`` for the first problem found.
    """
    if len(text.encode()) > MAX_JOB_BYTES:
        raise JobSpecError(f"{source}: the job file is larger than {MAX_JOB_BYTES} bytes")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise JobSpecError(f"{source}{where}: not valid YAML or JSON: {problem}") from None
    if not isinstance(data, dict):
        raise JobSpecError(f"{source}:1: a job must be a mapping with name, parties, components")
    expanded = _expand_sql(data, source)
    if expanded is not data:
        data, node = expanded, None  # the file's lines no longer match the components
    try:
        job = JobSpec.model_validate(data)
    except JobSpecProblem as exc:
        line = _line_of(node, exc.loc)
        where = f":{line}" if line else ""
        raise JobSpecError(f"{source}{where}: {_field_path(exc.loc)}: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(x for x in err["loc"] if not str(x).startswith("function-"))
        line = _line_of(node, loc)
        msg = err["msg"].removeprefix("Value error, ")
        where = f":{line}" if line else ""
        raise JobSpecError(f"{source}{where}: {_field_path(loc)}: {msg}") from None
    _check_components(job, node, source)
    return job


def _expand_sql(data: dict[str, Any], source: str) -> dict[str, Any]:
    """A ``type: sql`` component becomes the PSI and ``stats`` steps its query plans into
    (:mod:`rainbridge.jobs.sql`): ``<id>_join`` and ``<id>``, whose ``result`` is the answer.

    Params: ``query``, ``receiver``, and optionally ``dealer``, ``min_group_size``,
    ``decimals``. Every party expands the same text the same way.
    """
    comps = data.get("components")
    if not isinstance(comps, list) or not any(
        isinstance(c, dict) and c.get("type") == "sql" for c in comps
    ):
        return data
    from rainbridge.jobs.sql import plan_sql

    out: list[Any] = []
    for i, c in enumerate(comps):
        if not (isinstance(c, dict) and c.get("type") == "sql"):
            out.append(c)
            continue
        cid = str(c.get("id", f"sql{i}"))
        params = c.get("params") or {}
        if not isinstance(params, dict) or "query" not in params or "receiver" not in params:
            raise JobSpecError(f"{source}: components[{i}].params: sql needs query and receiver")
        unknown = set(params) - {"query", "receiver", "dealer", "min_group_size", "decimals", "ot"}
        if unknown:
            raise JobSpecError(
                f"{source}: components[{i}].params: unknown sql parameter {sorted(unknown)[0]!r}"
            )
        try:
            plan = plan_sql(
                str(params["query"]),
                dealer=params.get("dealer"),
                receiver=str(params["receiver"]),
                name=str(data.get("name", "sql")),
                decimals=int(params.get("decimals", 2)),
                min_group_size=int(params.get("min_group_size", 1)),
            )
        except (TypeError, ValueError):
            raise JobSpecError(
                f"{source}: components[{i}].params: decimals and min_group_size are integers"
            ) from None
        except JobSpecError as exc:
            raise JobSpecError(f"{source}: components[{i}] ({cid}): {exc}") from None
        psi, stats = plan.job["components"]
        if "ot" in params:  # checked with the stats component's parameters
            stats["params"]["ot"] = params["ot"]
        psi["id"] = f"{cid}_join"
        stats["id"] = cid
        for ref in stats["inputs"].values():
            if ref.get("from") == "psi.intersection":
                ref["from"] = f"{cid}_join.intersection"
        out += [psi, stats]
    return {**data, "components": out}


def _check_components(job: JobSpec, node: yaml.Node | None, source: str) -> None:
    from rainbridge.components import get_component

    for i, c in enumerate(job.components):
        try:
            comp = get_component(c.type)
        except JobSpecError as exc:
            line = _line_of(node, ("components", i, "type"))
            raise JobSpecError(f"{source}:{line}: components[{i}].type: {exc}") from None
        try:
            comp.check(c)
        except JobSpecError as exc:
            line = _line_of(node, ("components", i, *getattr(exc, "loc", ("params",))))
            raise JobSpecError(f"{source}:{line}: components[{i}]: {exc}") from None


def load_job(source: str | Path) -> JobSpec:
    """Load a job from a file path (``.yaml``, ``.yml`` or ``.json``)."""
    p = Path(source)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobSpecError(f"job file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JobSpecError(f"job file {p} cannot be read: {exc}") from None
    return parse_job(text, source=str(p))
