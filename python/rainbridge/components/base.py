"""What every component declares and what it is given when it runs."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from rainbridge.components.spec import ComponentSpec
from rainbridge.compute.engine import ComputeEngine, LocalEngine
from rainbridge.data import DatasetRef, write_table_atomic
from rainbridge.errors import JobSpecError
from rainbridge.net.channel import Channel


class ComponentParamError(JobSpecError):
    """A component's parameters are invalid; ``loc`` points into the component's spec."""

    def __init__(self, message: str, loc: tuple[Any, ...] = ("params",)) -> None:
        super().__init__(message)
        self.loc = loc


@dataclass
class ComponentContext:
    """Everything one party's role of one component may touch.

    ``inputs`` holds only this party's own data; ``channels`` only the component's peers.
    Outputs go under ``out_dir`` and only if this party is a named receiver.
    """

    job_id: str
    party: str
    spec: ComponentSpec
    params: BaseModel
    inputs: Mapping[str, DatasetRef]
    channels: Mapping[str, Channel]
    out_dir: Path
    progress: Callable[[float], None] = field(default=lambda f: None)
    #: this party's outputs from earlier components of the job, "component.output" -> path
    artifacts: Mapping[str, Path] = field(default_factory=dict)
    #: peers of this component that speak the interconnection standard instead of ours:
    #: name -> how to reach them (see :mod:`rainbridge.node.interop`); no channel to them
    interop: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: registered models from earlier jobs that this component may name, by the name the job
    #: uses: this party's part (``path``) and its registration (``id``, ``name``, ``version``)
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: where this party's tasks run (:mod:`rainbridge.compute`): this process by default
    compute: ComputeEngine = field(default_factory=LocalEngine)
    #: a new channel to a peer after the link dropped (the job's later components use it
    #: too); None where the party cannot reconnect
    reconnect: Callable[[str], Awaitable[Channel]] | None = None

    def write_output(self, name: str, table: pa.Table) -> dict[str, Any]:
        """Write output ``name`` as ``<component>.<name>.<format>`` under ``out_dir``
        (atomically); its entry for the summary's ``outputs``."""
        fmt = self.spec.outputs[name].format
        path = Path(self.out_dir) / f"{self.spec.id}.{name}.{fmt}"
        write_table_atomic(table, path, fmt)
        return {"path": str(path), "rows": table.num_rows, "columns": table.column_names,
                "format": fmt}  # fmt: skip

    def write_metrics(self, name: str, metrics: Mapping[str, float]) -> dict[str, Any]:
        """A ``metric, value`` table of ``metrics`` as output ``name``."""
        table = pa.table({"metric": list(metrics), "value": [float(v) for v in metrics.values()]})
        return self.write_output(name, table)


class Component(abc.ABC):
    """A step of a job: declares parameters and output names, runs one party's role."""

    #: the ``type`` used in job files
    type_name: ClassVar[str]
    #: one-line description (shown by ``rainbridge components``)
    summary: ClassVar[str]
    #: pydantic model of the parameters (validated when the job is loaded)
    Params: ClassVar[type[BaseModel]]
    #: names of the outputs the component can produce
    outputs: ClassVar[tuple[str, ...]]
    #: the outputs whose rows carry the input's ID column under its name (a later component
    #: reading one inherits that ID column: :mod:`rainbridge.jobs.complete`)
    id_outputs: ClassVar[tuple[str, ...]] = ()
    min_parties: ClassVar[int] = 2

    def parse_params(self, raw: Mapping[str, Any]) -> BaseModel:
        try:
            return self.Params.model_validate(dict(raw))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ("params", *err["loc"])
            field_name = ".".join(str(x) for x in err["loc"]) or "params"
            raise ComponentParamError(
                f"params.{field_name}: {err['msg'].removeprefix('Value error, ')}", loc
            ) from None

    def check(self, spec: ComponentSpec) -> None:
        """Validate a component spec beyond its schema (raises ComponentParamError)."""
        self.parse_params(spec.params)
        if len(spec.inputs) < self.min_parties:
            raise ComponentParamError(
                f"{self.type_name} needs inputs from at least {self.min_parties} parties",
                ("inputs",),
            )
        for name in spec.outputs:
            if name not in self.outputs:
                raise ComponentParamError(
                    f"{self.type_name} has no output {name!r} (it has: {', '.join(self.outputs)})",
                    ("outputs", name),
                )

    def columns_used(self, spec: ComponentSpec, party: str, id_column: str | None) -> list[str]:
        """The columns of ``party``'s data that enter the joint computation (what a grant's
        ``columns`` must allow). By default: the ID column it joins on."""
        ref = spec.inputs.get(party)
        col = (ref.id if ref is not None else None) or id_column
        return [col] if col else []

    def column_uses(
        self, spec: ComponentSpec, party: str, id_column: str | None
    ) -> dict[str, set[str]]:
        """How each column of ``party``'s data is used, for the owner's column policies
        (:data:`rainbridge.node.grants.COLUMN_LEVELS`): ``join`` (the ID matched),
        ``aggregate`` (only inside released aggregates), ``filter`` (compared with a
        constant; the rows that pass become visible to the join's receivers), ``group`` (its
        values label the released groups), ``reveal`` (its values leave as they are).

        By default the ID column is joined and any other column counts as revealed.
        """
        ref = spec.inputs.get(party)
        key = (ref.id if ref is not None else None) or id_column
        uses: dict[str, set[str]] = {}
        for col in self.columns_used(spec, party, id_column):
            uses.setdefault(col, set()).add("join" if col == key else "reveal")
        return uses

    def columns_needed(
        self, spec: ComponentSpec, party: str, id_column: str | None
    ) -> dict[str, str]:
        """Every column of ``party``'s input that this component reads or outputs there, each
        with what it is for: the ID column the input names, the columns of
        :meth:`column_uses` and :meth:`columns_used`, and the columns the job names for
        ``party`` in the component's outputs. A party checks them all before the job's first
        message (:func:`rainbridge.jobs.execute.check_inputs`); a component that reads more
        extends this."""
        ref = spec.inputs.get(party)
        if ref is None or ref.role is not None:
            return {}  # a role without data (the dealer, the aggregator) reads no column
        words = {
            "join": "as the ID to join on",
            "aggregate": "inside an aggregate",
            "filter": "in a filter",
            "group": "as a group key",
            "reveal": "as it is",
        }
        need: dict[str, str] = {}
        if ref.id:
            need[ref.id] = "as the ID column"
        for col, uses in self.column_uses(spec, party, id_column).items():
            how = " and ".join(words.get(u, u) for u in sorted(uses))
            need.setdefault(col, f"uses it {how}" if how else "reads it")
        for col in self.columns_used(spec, party, id_column):
            need.setdefault(col, "reads it")
        for name, out in spec.outputs.items():
            for col in out.columns.get(party, []):
                need.setdefault(col, f"names it for its output {name!r}")
        return need

    def output_columns(
        self, spec: ComponentSpec, output: str, party: str, id_column: str | None
    ) -> list[str] | None:
        """The columns output ``output`` will have at ``party`` (a receiver), so that a later
        component reading it (``from: component.output``) is checked before the job starts;
        ``id_column`` is the ID column of ``party``'s input. None: known only once written
        (later components are then checked when they read it)."""
        return None

    @abc.abstractmethod
    async def run(self, ctx: ComponentContext) -> dict[str, Any]:
        """Run this party's role; return a JSON-able summary (outputs written, stats)."""

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "summary": self.summary,
            "outputs": list(self.outputs),
            "params": self.Params.model_json_schema(),
        }
