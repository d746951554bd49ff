"""The batch-scoring job ``rainbridge model score`` submits: align the parties' new rows
with a PSI, then score them with a registered model (``predict`` naming it
``name@version``), the predictions to the model's label party.

Built from the model's registration at the label party: its parties, its label party and
every party's features (kept from the training job). The job is an ordinary job: every
party checks it (its dataset, the columns, its grants for ``psi`` and ``predict``, that its
part of that version is there and not retired) before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rainbridge.errors import ConfigError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def scoring_job(
    model: Mapping[str, Any],
    datasets: Mapping[str, str],
    *,
    label: str | None = None,
    ids: Mapping[str, str] | None = None,
    protocol: str | None = None,
    output_format: str = "csv",
) -> dict[str, Any]:
    """The job (as a dict, for ``POST /v1/jobs``) that scores ``datasets`` with ``model``.

    Parameters
    ----------
    model : Mapping
        The model's registration at the label party (``GET /v1/models/resolve``): ``name``,
        ``version``, ``parties``, ``label_party``, ``features_by_party``.
    datasets : Mapping[str, str]
        Each party's dataset of new rows, by party; every party of the model gives one.
    label : str, optional
        The label party's label column, when the new rows have one (AUC and KS).
    ids : Mapping[str, str], optional
        A party's ID column, when it is not its dataset's registered one.
    protocol : str, optional
        The PSI protocol (default: ``rr22`` for two parties, ``ecdh`` for more).

    Raises
    ------
    ConfigError
        A party is missing or not the model's (in ``datasets`` or ``ids``), or the model
        does not list every party's features (a part imported from before they were kept:
        write the job by hand).
    """
    parties = sorted(str(p) for p in model["parties"])
    extra = sorted(set(datasets) - set(parties))
    if extra:
        raise ConfigError(f"{', '.join(extra)} not a party of the model ({', '.join(parties)})")
    strays = sorted(set(ids or {}) - set(parties))
    if strays:  # ignored, the party would match on its registered ID column instead
        raise ConfigError(
            f"--id {', '.join(strays)}: not a party of the model ({', '.join(parties)})"
        )
    missing = [p for p in parties if p not in datasets]
    if missing:
        raise ConfigError(
            f"give every party's dataset of new rows: {', '.join(missing)} missing "
            "(--dataset PARTY=DATASET)"
        )
    feats = model.get("features_by_party")
    if not isinstance(feats, Mapping) or any(p not in feats for p in parties):
        raise ConfigError(
            f"model {model.get('id')!r} does not list every party's features; write the "
            "scoring job by hand (a psi, then a predict naming the model)"
        )
    receiver = str(model["label_party"])
    columns = {p: list(feats[p]) for p in parties}
    if label:
        columns[receiver] = [*columns[receiver], label]
    version = f"{model['name']}@{model['version']}"
    inputs: dict[str, Any] = {}
    for p in parties:
        ref: dict[str, Any] = {"dataset": datasets[p]}
        if ids and ids.get(p):
            ref["id"] = ids[p]
        inputs[p] = ref
    psi_params: dict[str, Any] = {"protocol": protocol or ("rr22" if len(parties) == 2 else "ecdh")}
    predict_params: dict[str, Any] = {"model": version}
    if label:
        predict_params["label"] = label
    name = _UNSAFE.sub("-", f"score-{model['name']}-v{model['version']}").strip("-.")[:64]
    return {
        "name": name if name[:1].isalpha() else f"s{name}"[:64],
        "description": f"score new rows with model {version}",
        "parties": parties,
        "components": [
            {
                "id": "align",
                "type": "psi",
                "inputs": inputs,
                "params": psi_params,
                "outputs": {
                    "intersection": {
                        "receivers": parties,
                        "columns": {p: c for p, c in columns.items() if c},
                    }
                },
            },
            {
                "id": "score",
                "type": "predict",
                "inputs": "align.intersection",
                "params": predict_params,
                "outputs": {"predictions": {"receivers": [receiver], "format": output_format}},
            },
        ],
    }


__all__ = ["scoring_job"]
