"""One party's view of a job, with what the job says once filled in where it is left out.

A job names a thing once; a later component that is not told again inherits it:

* **the ID column**: an input ``from: COMPONENT.OUTPUT`` without ``id`` has the ID column of
  that component's input at the same party, when the output keeps it (a PSI's
  intersection, a ``predict``'s predictions: ``Component.id_outputs``); a dataset input
  without ``id`` has the dataset's registered ID column (a PSI matches on it). A component
  that takes an ``id`` parameter (``train_lr``, ``stats``, ``predict``…) and is not given
  one uses the ID of its own input;
* **a model's features**: a ``predict`` without ``features`` scores with the features of the
  model it names — those of the training component earlier in the job, or, for a model
  from an earlier job, the features of this party's registered part (``models``).

Every party completes the job for itself, from the job as agreed and its own registry; the
job's digest stays that of the document every party accepted. What only one party can know
(its dataset's ID column, its part's features) is filled at that party only, which is all
its own role reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rainbridge.data import DatasetRef
from rainbridge.jobs.spec import JobSpec

#: component types that train a vertical model a later ``predict`` may name
MODEL_COMPONENTS = ("train_lr", "train_sgb")


def complete_job(
    job: JobSpec,
    party: str,
    datasets: Mapping[str, DatasetRef] | None = None,
    models: Mapping[str, Mapping[str, Any]] | None = None,
) -> JobSpec:
    """``job`` as ``party`` runs it: inherited ID columns and model features filled in.

    Parameters
    ----------
    datasets : Mapping[str, DatasetRef], optional
        ``party``'s registered datasets (their ID columns fill inputs that name none).
    models : Mapping[str, Mapping[str, Any]], optional
        Registered models a ``predict`` names, by the name the job uses, each with at least
        ``features`` (``party``'s features in its part).
    """
    from rainbridge.components import get_component

    data = job.to_dict()
    by_id: dict[str, dict[str, Any]] = {}
    ids: dict[str, str | None] = {}  # component id -> the ID column of its input at party
    for c in data["components"]:
        ref = c["inputs"].get(party)
        id_col: str | None = None
        if ref is not None and ref.get("role") is None:
            id_col = ref.get("id")
            if id_col is None and ref.get("dataset") is not None:
                ds = (datasets or {}).get(ref["dataset"])
                id_col = ds.id_column if ds is not None else None
                if id_col is not None:
                    ref["id"] = id_col
            elif id_col is None and ref.get("from") is not None:
                src, _, output = ref["from"].partition(".")
                if src in by_id and output in get_component(by_id[src]["type"]).id_outputs:
                    id_col = ids.get(src)  # only an output that keeps the ID column
                if id_col is not None:
                    ref["id"] = id_col
        ids[c["id"]] = id_col
        params = c["params"]
        fields = get_component(c["type"]).Params.model_fields
        if id_col is not None and "id" in fields and params.get("id") is None:
            params["id"] = {party: id_col}
        elif isinstance(params.get("id"), dict) and party not in params["id"] and id_col:
            params["id"] = {**params["id"], party: id_col}
        given = params.get("features") or {}
        # features named for other parties only: this party's are still the model's (its
        # checks and grants see the columns it will read)
        if (
            c["type"] == "predict"
            and ref is not None
            and isinstance(given, dict)
            and party not in given
        ):
            model = str(params.get("model", ""))
            trained = by_id.get(model)
            if trained is not None and trained["type"] in MODEL_COMPONENTS:
                feats = trained["params"].get("features") or {}
                params["features"] = {**{p: list(f) for p, f in feats.items()}, **given}
            elif models is not None and model in models:
                params["features"] = {**given, party: list(models[model].get("features") or [])}
        by_id[c["id"]] = c
    return JobSpec.model_validate(data)


__all__ = ["MODEL_COMPONENTS", "complete_job"]
