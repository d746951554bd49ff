"""The ``rainbridge`` command: run a node, manage peers, datasets and jobs, simulate locally.

Commands other than ``node init``, ``node start``, ``node config``, ``run --local`` and
``components`` talk to a running node's REST API: at ``--api URL`` (or ``$RAINBRIDGE_API``),
else at the address in ``--dir``'s configuration; the bearer token comes from
``$RAINBRIDGE_TOKEN``, else from ``--dir``.

Exit codes (see :data:`EXIT_CODES`): 0 success; 1 unexpected; 2 bad configuration, job file
or arguments; 3 data problem; 4 refused (authorization, authentication, a party said no);
5 a peer, a channel or the node is unreachable or failed; 6 the job failed, was cancelled or
aborted; 7 not found; 8 ``ledger verify`` found tampering.
"""

from __future__ import annotations

import click

from rainbridge.cli.common import EXIT_CODES
from rainbridge.cli.governance import catalogue, grant, ledger, metering, user
from rainbridge.cli.interop import interop
from rainbridge.cli.jobs import components, job, run_cmd
from rainbridge.cli.mlq import mlq
from rainbridge.cli.models import model
from rainbridge.cli.node_admin import node_upgrade
from rainbridge.cli.node_backup import node_backup, node_restore
from rainbridge.cli.node_config import node_config
from rainbridge.cli.nodes import dataset, node, peer
from rainbridge.cli.pir import pir
from rainbridge.cli.sql import sql_cmd

__all__ = ["EXIT_CODES", "main"]


@click.group()
@click.version_option(package_name="rainbridge")
def main() -> None:
    """Rainbridge: privacy-preserving computation between institutions' nodes."""


for _command in (
    node,
    peer,
    dataset,
    job,
    run_cmd,
    components,
    user,
    grant,
    catalogue,
    ledger,
    metering,
    sql_cmd,
    model,
    pir,
    mlq,
    interop,
):
    main.add_command(_command)
node.add_command(node_upgrade)
node.add_command(node_config)
node.add_command(node_backup)
node.add_command(node_restore)
