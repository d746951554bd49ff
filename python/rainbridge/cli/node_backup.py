"""``rainbridge node backup`` and ``node restore``: a node's directory and database as one
verified archive (see :mod:`rainbridge.node.backup`)."""

from __future__ import annotations

import click

from rainbridge.cli.common import dir_option, emit, fail, fail_with, json_option
from rainbridge.errors import RainbridgeError

MASTER_KEY_REMINDER = (
    "the master key is NOT in the backup: keep it apart (a secret store, not beside the "
    "archive); restoring needs it ($RAINBRIDGE_MASTER_KEY or the master key file)"
)


@click.command("backup")
@dir_option
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="The archive to write (tar.gz, mode 0600), outside the node directory.",
)
@click.option(
    "--no-job-outputs",
    is_flag=True,
    help="Leave out outputs/ (the files jobs delivered here); job records and results stay.",
)
@json_option
def node_backup(directory: str, out: str, no_job_outputs: bool, as_json: bool) -> None:
    """Back up a node, running or stopped: a consistent snapshot of its database (SQLite's
    online backup, or pg_dump) and its directory, with a manifest of digests.

    The master key is left out: keep it apart, restoring needs it.
    """
    from rainbridge.node.backup import backup_node

    try:
        res = backup_node(directory, out, job_outputs=not no_job_outputs)
    except RainbridgeError as exc:
        fail_with(exc)
    except OSError as exc:
        fail(f"cannot write the backup {out}: {exc.strerror or exc}", 2)
    m = res.manifest
    head = m["ledger_head"]
    size = res.path.stat().st_size
    out_obj = {
        "archive": str(res.path),
        "bytes": size,
        "node": m["node"],
        "database": m["database"]["kind"],
        "ledger_head": head,
        "members": len(m["members"]),
        "job_outputs": m["job_outputs"],
        "left_out": res.left_out,
        "master_key": "not included",
    }
    head_text = f"seq {head['seq']} hash {head['hash'][:16]}…" if head else "empty"
    lines = [
        f"node {m['node']!r} backed up to {res.path} ({size} bytes, {len(m['members'])} files)",
        f"  database    {m['database']['kind']}",
        f"  ledger head {head_text}",
        *(f"  left out    {x}" for x in res.left_out),
    ]
    emit(out_obj, as_json, "\n".join(lines))
    click.echo(f"reminder: {MASTER_KEY_REMINDER}", err=True)


@click.command("restore")
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option(
    "--dir",
    "directory",
    required=True,
    help="Where the node is restored: a new or empty folder.",
)
@click.option(
    "--db",
    "db_url",
    default=None,
    envvar="RAINBRIDGE_RESTORE_DB",
    show_envvar=True,
    help="For a PostgreSQL backup: the empty database to restore into (SQLAlchemy URL; "
    "in the environment, a password stays off the command line).",
)
@json_option
def node_restore(archive: str, directory: str, db_url: str | None, as_json: bool) -> None:
    """Restore a backup into a new node directory (and an empty PostgreSQL database).

    Every file's digest is checked, the ledger is verified and must end at the head the
    backup recorded; on any failure nothing is left behind (exit 3 for a damaged or
    tampered archive, 2 for a bad target).
    """
    from rainbridge.node.restore import restore_node

    try:
        res = restore_node(archive, directory, db_url)
    except RainbridgeError as exc:
        fail_with(exc)
    except OSError as exc:
        fail(f"cannot restore into {directory}: {exc.strerror or exc}", 2)
    m = res.manifest
    head = m["ledger_head"]
    out_obj = {
        "dir": str(res.directory),
        "node": m["node"],
        "database": m["database"]["kind"],
        "ledger_head": head,
        "ledger_verified": True,
        "backup_created_at": m["created_at"],
        "master_key": res.master_key,
        "schema": res.schema,
    }
    head_text = f"seq {head['seq']} hash {head['hash'][:16]}…" if head else "empty"
    key_text = (
        "the master key given opens the restored keys"
        if res.master_key == "opened"
        else "no master key given yet: " + MASTER_KEY_REMINDER
    )
    emit(
        out_obj,
        as_json,
        f"node {m['node']!r} restored into {res.directory} (backup of {m['created_at']})\n"
        f"  ledger      verified, head {head_text} as recorded\n"
        f"  master key  {key_text}\n"
        + (f"  schema      {res.schema}\n" if res.schema != "current" else "")
        + f"start it with: rainbridge node start --dir {res.directory}",
    )
    if res.master_key != "opened":
        click.echo(f"reminder: {MASTER_KEY_REMINDER}", err=True)
