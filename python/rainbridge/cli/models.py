"""``rainbridge model``: this node's parts of trained models, and online scoring."""

from __future__ import annotations

import click

from rainbridge.cli.common import Api, api_command, emit, fail


@click.group("model")
def model() -> None:
    """Trained models (this node's part of each) and online scoring."""


@model.command("list")
@api_command
def model_list(directory: str, api_url: str | None, as_json: bool) -> None:
    """List this node's model parts: ID (job.component), label party, features."""
    rows = Api(directory, api_url).call("GET", "/v1/models")
    text = "\n".join(
        f"{r['id']:32} {r['name']} v{r['version']}  label at {r['label_party']}: "
        f"{', '.join(r['features'])}"
        for r in rows
    )
    emit(rows, as_json, text or "no models")


@model.command("show")
@click.argument("model_id")
@api_command
def model_show(model_id: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """One model: metadata and this node's part (LR: its weights; SecureBoost: its trees and
    how often each of its features splits)."""
    out = Api(directory, api_url).call("GET", f"/v1/models/{model_id}")
    part = out["part"]
    lines = [f"{out['id']}  {out['type']}  parties {', '.join(out['parties'])}"]
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


@model.command("predict")
@click.argument("model_id")
@click.option("--key", required=True, help="The applicant's ID.")
@click.option(
    "--feature",
    "features",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="This node's features of the applicant (default: its row in the dataset).",
)
@api_command
def model_predict(
    model_id: str,
    key: str,
    features: tuple[str, ...],
    directory: str,
    api_url: str | None,
    as_json: bool,
) -> None:
    """Score one applicant online, gathering the other parties' partial scores."""
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
    out = Api(directory, api_url).call(
        "POST", f"/v1/models/{model_id}/predict", {"key": key, "features": given}
    )
    emit(out, as_json, f"{key}: score {out['score']:.4f} ({out['milliseconds']:.1f} ms)")


@model.command("export")
@click.argument("model_id")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write it here.")
@api_command
def model_export(
    model_id: str, out_path: str | None, directory: str, api_url: str | None, as_json: bool
) -> None:
    """This node's part of a model, with its registration, as JSON (to import elsewhere)."""
    import json
    from pathlib import Path

    out = Api(directory, api_url).call("GET", f"/v1/models/{model_id}/export")
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
