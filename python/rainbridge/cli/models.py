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
        f"{r['id']:32} {r['type']:10} label at {r['label_party']:10} {', '.join(r['features'])}"
        for r in rows
    )
    emit(rows, as_json, text or "no models")


@model.command("show")
@click.argument("model_id")
@api_command
def model_show(model_id: str, directory: str, api_url: str | None, as_json: bool) -> None:
    """One model: metadata and this node's part (features, standardisation, weights)."""
    out = Api(directory, api_url).call("GET", f"/v1/models/{model_id}")
    part = out["part"]
    lines = [f"{out['id']}  {out['type']}  parties {', '.join(out['parties'])}"]
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
            given = {**(given or {}), col: float(value)}
        except ValueError:
            fail(f"--feature wants COLUMN=NUMBER, got {item!r}", 2)
        if not eq:
            fail(f"--feature wants COLUMN=NUMBER, got {item!r}", 2)
    out = Api(directory, api_url).call(
        "POST", f"/v1/models/{model_id}/predict", {"key": key, "features": given}
    )
    emit(out, as_json, f"{key}: score {out['score']:.4f} ({out['milliseconds']:.1f} ms)")
