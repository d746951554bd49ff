"""Local simulation: every party of a job in one process over in-process channels.

Same components, same outputs as a real federation, for notebooks and tests::

    from rainbridge.jobs import load_job
    from rainbridge.jobs.local import run_local
    from rainbridge.data import inspect_dataset

    job = load_job("align.yaml")
    data = {
        "bank": {"customers": inspect_dataset("customers", "bank.csv", "customer_id")},
        "telecom": {"subscribers": inspect_dataset("subscribers", "tel.csv", "customer_id")},
    }
    results = run_local(job, data, "out/")   # out/bank/..., out/telecom/...

As in a federation, every party's inputs are checked before any party sends anything, and
a job that fails at any party leaves no output at any party.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rainbridge.data import DatasetRef
from rainbridge.errors import ChannelError, DataError, RainbridgeError
from rainbridge.jobs.complete import complete_job
from rainbridge.jobs.execute import check_inputs, run_party
from rainbridge.jobs.spec import JobSpec
from rainbridge.net.local import LocalChannel


async def run_local_async(
    job: JobSpec,
    datasets: Mapping[str, Mapping[str, DatasetRef]],
    out_dir: str | Path,
    *,
    timeout: float = 60.0,
    models: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every party of ``job``; outputs go to ``out_dir/<party>/``.

    ``models``: per party, the registered models a ``predict`` names (see
    :func:`~rainbridge.jobs.execute.run_party`).

    Raises
    ------
    DataError
        A party's input is missing (before anything runs; see
        :func:`~rainbridge.jobs.execute.check_inputs`).
    RainbridgeError
        A party failed; the first party to fail holds the cause. No output is left.
    """
    for party in job.parties:
        mine = datasets.get(party, {})
        check_inputs(complete_job(job, party, mine, (models or {}).get(party)), party, mine)
        _check_models(job, party, (models or {}).get(party) or {})
    out = Path(out_dir)
    existed = out.exists()
    session = f"local-{uuid.uuid4().hex[:12]}"
    mesh = LocalChannel.mesh(session, list(job.parties), timeout=timeout)

    async def one(party: str) -> dict[str, Any]:
        try:
            return await run_party(
                job,
                party,
                mesh[party],
                datasets.get(party, {}),
                out / party,
                job_id=session,
                models=(models or {}).get(party),
            )
        except BaseException:
            # Wake the other parties at once instead of letting them wait for a timeout.
            for ch in mesh[party].values():
                await ch.close()
            raise

    results = await asyncio.gather(*(one(p) for p in job.parties), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        # Every party waits for all the others to finish before it keeps its outputs, so none
        # should have any; remove whatever a party kept all the same.
        for r in results:
            if isinstance(r, dict):
                for comp in r.get("components", {}).values():
                    for o in comp.get("outputs", {}).values():
                        Path(o["path"]).unlink(missing_ok=True)
        if not existed:  # the folders this run made, if empty
            for d in [*out.glob("*"), out]:
                with contextlib.suppress(OSError):
                    d.rmdir()
        typed = [e for e in errors if isinstance(e, RainbridgeError)]
        # The first party to fail holds the cause; the others only saw it go away.
        causes = [e for e in typed if not isinstance(e, ChannelError)]
        raise (causes or typed or errors)[0]
    return {p: r for p, r in zip(job.parties, results, strict=True)}  # type: ignore[misc]


def _check_models(job: JobSpec, party: str, models: Mapping[str, Any]) -> None:
    """Refuse a ``predict`` at ``party`` naming neither an earlier component nor a model
    part given (what a node's registry refuses at the proposal), before anything runs."""
    earlier: set[str] = set()
    for c in job.components:
        name = str(c.params.get("model", ""))
        if c.type == "predict" and party in c.inputs and name not in earlier | set(models):
            raise DataError(
                f"component {c.id!r}: no model {name!r} at {party!r}: name a train_lr or "
                f"train_sgb component earlier in this job, or give its part of a model "
                f"(--model {party}:{name}=PATH)"
            )
        earlier.add(c.id)


def run_local(
    job: JobSpec,
    datasets: Mapping[str, Mapping[str, DatasetRef]],
    out_dir: str | Path,
    *,
    timeout: float = 60.0,
    models: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Blocking form of :func:`run_local_async`."""
    return asyncio.run(run_local_async(job, datasets, out_dir, timeout=timeout, models=models))


def datasets_from_args(job: JobSpec, pairs: list[str]) -> dict[str, dict[str, DatasetRef]]:
    """Map ``PARTY.DATASET=PATH`` arguments to inspected datasets for :func:`run_local`.

    The ID column of each dataset is taken from the job's inputs. Every dataset the job reads
    must be given; a missing or unknown one is refused with its name.
    """
    from rainbridge.data import inspect_dataset
    from rainbridge.errors import ConfigError

    given: dict[tuple[str, str], str] = {}
    for arg in pairs:
        key, sep, path = arg.partition("=")
        party, dot, name = key.partition(".")
        if not sep or not dot or not party or not name or not path:
            raise ConfigError(f"--dataset {arg!r}: expected PARTY.DATASET=PATH")
        given[(party, name)] = path
    out: dict[str, dict[str, DatasetRef]] = {p: {} for p in job.parties}
    for party in job.parties:
        for name in sorted(job.datasets_of(party)):
            if (party, name) not in given:
                raise ConfigError(
                    f"job {job.name!r} reads dataset {name!r} at {party!r}: "
                    f"give it with --dataset {party}.{name}=PATH"
                )
            id_col = next(
                (
                    ref.id
                    for c in job.components
                    for p, ref in c.inputs.items()
                    if p == party and ref.dataset == name and ref.id
                ),
                None,
            )
            out[party][name] = inspect_dataset(name, given.pop((party, name)), id_col)
    if given:
        extra = ", ".join(f"{p}.{n}" for p, n in given)
        raise ConfigError(f"--dataset {extra}: the job does not read these datasets")
    return out


def models_from_args(job: JobSpec, pairs: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Map ``PARTY:NAME=PATH`` arguments (a party's part of a model, the ``model`` output of
    an earlier run) to what :func:`run_local` gives a ``predict`` naming ``NAME``."""
    import json

    from rainbridge.errors import ConfigError

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for arg in pairs:
        key, sep, path = arg.partition("=")
        party, colon, name = key.partition(":")
        if not sep or not colon or not party or not name or not path:
            raise ConfigError(f"--model {arg!r}: expected PARTY:NAME=PATH")
        if party not in job.parties:
            raise ConfigError(f"--model {arg!r}: {party!r} is not a party of the job")
        try:
            part = json.loads(Path(path).read_text())
            info = {
                "id": f"{part['job']}.{part['component']}",
                "name": name,
                "path": str(Path(path).resolve()),
                "features": [str(f) for f in part["features"]],
            }
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"--model {arg!r}: not a model part (a model output)") from None
        if part.get("party", party) != party:  # same training: the same-model check passes
            raise ConfigError(
                f"--model {arg!r}: it is {part['party']!r}'s part of the model, not {party!r}'s"
            )
        out.setdefault(party, {})[name] = info
    return out
