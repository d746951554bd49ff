"""The part of the job format that belongs to one component: inputs, params, outputs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
_FROM_PATTERN = r"^[A-Za-z0-9_.-]+\.[A-Za-z0-9_-]+$"  # component.output


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputRef(_Strict):
    """One party's input to a component: a registered dataset, an earlier output, or a role
    without data (``role: dealer``, the party that serves correlated randomness;
    ``role: aggregator``, the server of horizontal federated learning)."""

    dataset: str | None = Field(default=None, pattern=NAME_PATTERN)
    id: str | None = None
    from_: str | None = Field(default=None, alias="from", pattern=_FROM_PATTERN)
    role: Literal["dealer", "aggregator"] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> InputRef:
        given = [x for x in (self.dataset, self.from_, self.role) if x is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'dataset', 'from' (component.output) or 'role' (dealer or "
                "aggregator)"
            )
        return self


class OutputSpec(_Strict):
    """Who receives an output, in which format, with which of their own columns."""

    receivers: list[str] = Field(min_length=1)
    format: Literal["parquet", "csv"] = "parquet"
    columns: dict[str, list[str]] = Field(default_factory=dict)


class ComponentSpec(_Strict):
    """One node of the job's DAG."""

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    type: str
    inputs: dict[str, InputRef] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, OutputSpec] = Field(default_factory=dict)

    @property
    def parties(self) -> list[str]:
        return sorted(self.inputs)
