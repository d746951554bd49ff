"""Names of data-plane sessions: one control exchange, or one job's pair of parties.

Both ends derive a job session's name from the job id and the two party names, so a peer
cannot steer its stream into another job's worker by naming a session it was not given.
"""

from __future__ import annotations

import uuid

CONTROL = "control:"
JOB = "job:"
#: how a node refuses a job session before its worker runs (the dialler retries on it)
NOT_RUNNING = "job not running here"


def control_session() -> str:
    """A fresh session id for one control request and its reply."""
    return f"{CONTROL}{uuid.uuid4().hex}"


def pair_session(job_id: str, a: str, b: str) -> str:
    """The session of job ``job_id`` between parties ``a`` and ``b`` (order-independent)."""
    x, y = sorted((a, b))
    return f"{JOB}{job_id}/{x}-{y}"


def is_control(session: str) -> bool:
    return session.startswith(CONTROL)


def job_of(session: str) -> str | None:
    """The job id a job session belongs to, or None for any other session."""
    if not session.startswith(JOB):
        return None
    return session[len(JOB) :].split("/", 1)[0] or None


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def valid_job_id(job_id: str) -> bool:
    """Job ids travel in file names and session ids: short, alphanumeric."""
    return 0 < len(job_id) <= 64 and job_id.isascii() and job_id.isalnum()
