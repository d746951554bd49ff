"""What a node checks before it takes part in a job (its own or a peer's proposal).

For this release a node accepts a job only if it is named as a party, every other party is a
pinned peer, the initiator is one of the parties, and every dataset the job reads here is
registered with the columns the job names. Fine-grained grants (which component, which
counterparty, quota, expiry) build on this check later. A refusal says why, naming the
dataset, column or party at fault; it never echoes the job's other content.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from rainbridge.data import DatasetRef
from rainbridge.errors import AuthorizationError, DataError
from rainbridge.jobs.spec import JobSpec


def check_job(
    job: JobSpec,
    *,
    node: str,
    initiator: str,
    peers: Collection[str],
    datasets: Mapping[str, DatasetRef],
) -> None:
    """Refuse a job that ``node`` must not run, saying why.

    Parameters
    ----------
    job : JobSpec
        The job as proposed (already validated as a job file).
    node : str
        This node's party name.
    initiator : str
        The party that proposed the job (``node`` itself for a local submission).
    peers : Collection[str]
        Names of the peers pinned at this node.
    datasets : Mapping[str, DatasetRef]
        The datasets registered at this node, by name.

    Raises
    ------
    AuthorizationError
        This node is not a party, a party or the initiator is not a known peer, or the job
        reads a dataset that is not registered here.
    DataError
        A registered dataset lacks a column the job names. The message names the dataset and
        the column, not the file: a refusal goes back to the proposing peer.
    """
    if node not in job.parties:
        raise AuthorizationError(f"{node!r} is not a party of job {job.name!r}")
    if initiator != node and initiator not in peers:
        raise AuthorizationError(f"{initiator!r} is not a known peer of {node!r}")
    if initiator not in job.parties:
        raise AuthorizationError(f"initiator {initiator!r} is not a party of job {job.name!r}")
    unknown = [p for p in job.parties if p != node and p not in peers]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise AuthorizationError(
            f"{names} {'is not a known peer' if len(unknown) == 1 else 'are not known peers'} "
            f"of {node!r} (pin with `rainbridge peer add`)"
        )
    for c in job.components:
        ref = c.inputs.get(node)
        if ref is None or ref.dataset is None:
            continue
        ds = datasets.get(ref.dataset)
        if ds is None:
            raise AuthorizationError(
                f"dataset {ref.dataset!r} is not registered at {node!r} (component {c.id!r})"
            )
        wanted = [ref.id or ds.id_column] if (ref.id or ds.id_column) else []
        for out in c.outputs.values():
            wanted += out.columns.get(node, [])
        missing = [col for col in dict.fromkeys(wanted) if col not in ds.columns]
        if missing:
            raise DataError(
                f"dataset {ds.name!r} at {node!r} has no column "
                f"{', '.join(map(repr, missing))} (component {c.id!r})"
            )
