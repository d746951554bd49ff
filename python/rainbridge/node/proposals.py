"""What a node checks before it takes part in a job (its own or a peer's proposal).

A node accepts a job only if it is named as a party, every other party is a pinned peer, the
initiator is one of the parties, every dataset the job reads here is registered and its file
is there, and every column any component reads or outputs here exists — in the dataset's
file, or in the earlier output it comes from (:func:`~rainbridge.jobs.execute.check_inputs`,
which the job's worker runs again before its first message). Grants (which component, which
counterparty, quota, expiry) are checked by :mod:`.grants`. A refusal says why, naming the
dataset, column or party at fault; it never echoes the job's other content or a path.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from rainbridge.data import DatasetRef
from rainbridge.errors import AuthorizationError
from rainbridge.jobs.execute import check_inputs
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
        A registered dataset's file is gone, or a column that a component reads or outputs
        here is missing. The message names the dataset, the column and the component, not
        the file: a refusal goes back to the proposing peer.
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
        if ref is not None and ref.dataset is not None and ref.dataset not in datasets:
            raise AuthorizationError(
                f"dataset {ref.dataset!r} is not registered at {node!r} (component {c.id!r})"
            )
    check_inputs(job, node, datasets)
