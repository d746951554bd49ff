"""``rainbridge model``: this node's parts of trained models: versions, retirement, batch
scoring with a registered model, and online scoring."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from rainbridge.cli.common import Api, api_command, emit, fail

_MODEL_HELP = "MODEL is its ID (job.component), NAME@VERSION, or NAME (its latest version in use)."


@click.group("model")
def model() -> None:
    """Trained models (this node's part of each): versions, batch and online scoring.

    A model is named by its ID (job.component, the same at every party), NAME@VERSION, or
    NAME alone (its latest version in use here).
    """


def _auc(row: dict[str, Any]) -> str:
    auc = (row.get("metrics") or {}).get("auc")
    return f"AUC {auc:.4f}" if isinstance(auc, int | float) else ""


def card_text(metrics: dict[str, Any]) -> str:
    """A model's training figures in one line: AUC and KS to 4 decimals, counts whole."""
    words = {"epochs_run": "epochs", "seconds": "s"}
    out = []
    for k, v in metrics.items():
        if not isinstance(v, int | float):
            continue
        if k in ("auc", "ks", "accuracy", "rmse"):
            out.append(f"{k.upper() if k != 'accuracy' else k} {v:.4f}")
        elif k == "seconds":
            out.append(f"{v:.1f} s")
        else:
            out.append(f"{words.get(k, k)} {int(v) if float(v).is_integer() else v}")
    return ", ".join(out)


def resolve(api: Api, ref: str) -> dict[str, Any]:
    """The registration ``ref`` names at the node (ID, name@version or name)."""
    return dict(api.call("GET", f"/v1/models/resolve?ref={quote(ref, safe='')}"))


@model.command("list")
@click.argument("name", required=False)
@click.option("--active", is_flag=True, help="Only the versions in use (not retired).")
@api_command
def model_list(
    name: str | None, active: bool, directory: str, api_url: str | None, as_json: bool
) -> None:
    """List this node's model parts (every version of NAME, if given): ID, name and version,
    status, label party, this node's features."""
    query = [f"name={quote(name, safe='')}"] if name else []
    if active:
        query.append("active=true")
    rows = Api(directory, api_url).call(
        "GET", "/v1/models" + ("?" + "&".join(query) if query else "")
    )
    text = "\n".join(
        f"{r['id']:32} {r['name']}@{r['version']}  {r.get('status', 'active'):7}  "
        f"{_auc(r):10}  label at {r['label_party']}: "
        f"{', '.join(r['features']) or '(no features here)'}"
        for r in rows
    )
    emit(rows, as_json, text or "no models")


@model.command("show")
@click.argument("model_ref", metavar="MODEL")
@api_command
def model_show(model_ref: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """One model: metadata and this node's part (LR: its weights; SecureBoost: its trees and
    how often each of its features splits)."""
    api = Api(directory, api_url)
    out = api.call("GET", f"/v1/models/{resolve(api, model_ref)['id']}")
    part = out["part"]
    lines = [
        f"{out['id']}  {out['name']}@{out['version']}  {out['type']}  {out.get('status', '')}",
        f"  parties {', '.join(out['parties'])}; label at {out['label_party']}",
    ]
    for p, cols in sorted((out.get("features_by_party") or {}).items()):
        lines.append(f"  features at {p}: {', '.join(cols) or '(none)'}")
    if out.get("metrics"):
        lines.append("  training: " + card_text(out["metrics"]))
    if "trees" in part:
        used = [0] * len(part["features"])
        for t in part["trees"]:
            for f, _thr in t["splits"].values():
                used[f] += 1
        lines.append(f"  {len(part['trees'])} trees ({part['objective']}); splits per feature:")
        lines += [f"  {f:24} {n}" for f, n in zip(part["features"], used, strict=True)]
        emit(out, as_json, "\n".join(lines))
        return
    for f, w in zip(part["features"], part["weights"], strict=True):
        lines.append(f"  {f:24} {w:+.4f}")
    if part.get("intercept") is not None:
        lines.append(f"  {'(intercept)':24} {part['intercept']:+.4f}")
    emit(out, as_json, "\n".join(lines))


@model.command("retire")
@click.argument("model_ref", metavar="MODEL")
@api_command
def model_retire(model_ref: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """Retire a model version here: no job and no online request scores with it again.

    Each party retires its own part; a job naming a version that any party has retired is
    refused by that party. NAME alone names the latest version in use.
    """
    out = Api(directory, api_url).call("POST", "/v1/models/retire", {"model": model_ref})
    emit(out, as_json, f"model {out['name']}@{out['version']} ({out['id']}) retired")


@model.command("score")
@click.argument("model_ref", metavar="MODEL")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    required=True,
    metavar="PARTY=DATASET",
    help="Each party's registered dataset of new rows (repeat, one per party of the model).",
)
@click.option("--label", help="The label party's label column, if the new rows have one.")
@click.option("--id", "ids", multiple=True, metavar="PARTY=COLUMN", help="A party's ID column.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Save the scores here.")
@click.option("--print-job", is_flag=True, help="Print the job and submit nothing.")
@api_command
def model_score(
    model_ref: str,
    datasets: tuple[str, ...],
    label: str | None,
    ids: tuple[str, ...],
    out_path: str | None,
    print_job: bool,
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Score new rows with a registered model (run at its label party): a job that aligns
    every party's dataset by PSI, then scores the common rows with MODEL; the predictions
    come back here. Every party checks it as any job (grants for psi and predict)."""
    import json

    import yaml

    from rainbridge.errors import RainbridgeError
    from rainbridge.jobs.scoring import scoring_job

    api = Api(directory, api_url)
    reg = resolve(api, model_ref)
    try:
        spec = scoring_job(reg, _pairs(datasets, "--dataset"), label=label, ids=_pairs(ids, "--id"))
    except RainbridgeError as exc:
        fail(str(exc), 2)
    if print_job:
        click.echo(json.dumps(spec, indent=2) if as_json else yaml.safe_dump(spec, sort_keys=False))
        return
    row = api.call("POST", "/v1/jobs", {"spec": spec})
    from rainbridge.cli.jobs import wait_for_job

    row = wait_for_job(api, row["id"], show=not as_json and sys.stderr.isatty())
    if row["status"] != "succeeded":
        fail(
            f"scoring job {row['id']}: {row['status']}"
            + (f" ({row['error']})" if row.get("error") else ""),
            6,
        )
    result = api.call("GET", f"/v1/jobs/{row['id']}/result")["result"] or {}
    summary = result.get("components", {}).get("score", {})
    out = {"job": row["id"], "model": reg["id"], "name": reg["name"], "version": reg["version"],
           "rows": summary.get("rows"), "result": summary.get("result", {})}  # fmt: skip
    if out_path:
        data = api.raw("GET", f"/v1/jobs/{row['id']}/outputs/score/predictions?format=file")
        Path(out_path).write_bytes(data)
        out["out"] = out_path
    metrics = "".join(f", {k} {v:.4f}" for k, v in out["result"].items() if k in ("auc", "ks"))
    emit(out, as_json, f"job {row['id']}: {out['rows']} rows scored with {reg['name']}@"
         f"{reg['version']}{metrics}" + (f" -> {out_path}" if out_path else ""))  # fmt: skip


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key or not value:
            fail(f"{option} wants PARTY=NAME, got {item!r}", 2)
        out[key] = value
    return out


@model.command("predict")
@click.argument("model_ref", metavar="MODEL")
@click.option("--key", help="The applicant's ID (without it: list the features needed).")
@click.option(
    "--feature",
    "features",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="This node's features of the applicant (default: its row in the dataset).",
)
@api_command
def model_predict(
    model_ref: str,
    key: str | None,
    features: tuple[str, ...],
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Score one applicant online, gathering the other parties' partial scores.

    This node's features come from --feature COLUMN=VALUE, else from its row in the model's
    dataset here. Without --key: the features the model needs at each party."""
    api = Api(directory, api_url)
    reg = resolve(api, model_ref)
    if key is None:
        by_party = reg.get("features_by_party") or {reg["label_party"]: reg["features"]}
        lines = [f"model {reg['name']}@{reg['version']} ({reg['id']}) needs:"]
        lines += [f"  at {p}: {', '.join(f) or '(none)'}" for p, f in sorted(by_party.items())]
        lines.append("give this node's with --feature COLUMN=VALUE, or --key ID to use its row")
        emit({"model": reg["id"], "features": by_party}, as_json, "\n".join(lines))
        return
    given: dict[str, float] | None = None
    for item in features:
        col, eq, value = item.partition("=")
        try:
            number = float(value) if eq and col else None
        except ValueError:
            number = None
        if number is None:
            fail(f"--feature wants COLUMN=NUMBER, got {item!r}", 2)
        given = {**(given or {}), col: number}
    out = api.call("POST", f"/v1/models/{reg['id']}/predict", {"key": key, "features": given})
    emit(out, as_json, f"{key}: score {out['score']:.4f} ({out['milliseconds']:.1f} ms)")


@model.command("export")
@click.argument("model_ref", metavar="MODEL")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write it here.")
@api_command
def model_export(
    model_ref: str, out_path: str | None, directory: str, api_url: str | None, as_json: bool
) -> None:
    """This node's part of a model, with its registration, as JSON (to import elsewhere)."""
    import json
    from pathlib import Path

    api = Api(directory, api_url)
    model_id = resolve(api, model_ref)["id"]
    out = api.call("GET", f"/v1/models/{model_id}/export")
    text = json.dumps(out, indent=2)
    if out_path:
        Path(out_path).write_text(text + "\n")
        emit(out, as_json, f"model {model_id!r} exported to {out_path}")
    else:
        click.echo(text)


@model.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--dataset", help="This node's dataset to look IDs up in for online scoring.")
@api_command
def model_import(
    path: str, dataset: str | None, directory: str, api_url: str | None, as_json: bool
) -> None:
    """Register an exported model part here (the next version of its name)."""
    import json
    from pathlib import Path

    try:
        exported = json.loads(Path(path).read_text())
    except ValueError as exc:
        fail(f"{path} is not JSON: {exc}", 2)
    out = Api(directory, api_url).call(
        "POST", "/v1/models/import", {"model": exported, "dataset": dataset}
    )
    emit(out, as_json, f"model {out['id']!r} imported as {out['name']} v{out['version']}")
