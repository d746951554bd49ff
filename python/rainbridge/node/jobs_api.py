"""The REST routes of jobs: submit, list, read, cancel, approve or decline a job, read the
outputs it wrote here, and the component catalogue the console builds jobs from."""

# ruff: noqa: B008  (FastAPI declares dependencies as parameter defaults)

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from rainbridge.errors import NotFoundError
from rainbridge.node.service import NodeService
from rainbridge.node.storage import UserRow

if TYPE_CHECKING:
    from rainbridge.node.api import Actor, May


class JobIn(BaseModel):
    """A job to propose to its parties (the job file's content, as JSON)."""

    model_config = ConfigDict(extra="forbid")
    spec: dict[str, Any]


class DeclineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


def router(service: NodeService, may: May, actor: Actor) -> APIRouter:
    """The jobs' routes, served by ``service.jobs`` and the node's storage."""
    r = APIRouter(tags=["jobs"])

    @r.get("/v1/jobs")
    def jobs(
        user: UserRow = Depends(may("jobs.read")),
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Recent jobs at this node, newest first."""
        return service.storage.job_dicts(limit=max(1, min(limit, 1000)))

    @r.post("/v1/jobs", status_code=201)
    async def submit(body: JobIn, user: UserRow = Depends(may("jobs.submit"))) -> dict[str, Any]:
        """Validate a job, propose it to every party, and start it once all accept."""
        return await service.jobs.submit(body.spec, actor=actor(user))

    @r.get("/v1/jobs/{job_id}")
    def job(job_id: str, user: UserRow = Depends(may("jobs.read"))) -> dict[str, Any]:
        """A job's status, progress per component, every party's decision, any error, and
        its spec (the console draws the components' graph from it)."""
        return {**service.storage.job_dict(job_id), "spec": service.storage.job(job_id).spec}

    @r.get("/v1/jobs/{job_id}/result")
    def result(job_id: str, user: UserRow = Depends(may("jobs.read"))) -> dict[str, Any]:
        """What the job produced at this node (outputs with paths and sizes, bytes moved)."""
        row = service.storage.job(job_id)
        return {"id": row.id, "status": row.status, "error": row.error, "result": row.result}

    @r.post("/v1/jobs/{job_id}/cancel")
    async def cancel(job_id: str, user: UserRow = Depends(may("jobs.cancel"))) -> dict[str, Any]:
        """Stop a job here and tell the other parties; a finished job is left as it is."""
        return await service.jobs.cancel(job_id, actor=actor(user))

    @r.post("/v1/jobs/{job_id}/approve")
    async def approve(job_id: str, user: UserRow = Depends(may("jobs.approve"))) -> dict[str, Any]:
        """Approve a job held under a grant in manual-approval mode."""
        return await service.jobs.approve(job_id, actor=actor(user))

    @r.post("/v1/jobs/{job_id}/decline")
    async def decline(
        job_id: str, body: DeclineIn, user: UserRow = Depends(may("jobs.approve"))
    ) -> dict[str, Any]:
        """Refuse a job held for approval; the other parties are told."""
        return await service.jobs.decline(job_id, body.reason, actor=actor(user))

    @r.get("/v1/jobs/{job_id}/outputs/{component}/{output}")
    def job_output(
        job_id: str,
        component: str,
        output: str,
        user: UserRow = Depends(may("jobs.read")),
        limit: int = 10_000,
        offset: int = 0,
        format: Literal["json", "file"] = "json",
    ) -> Response:
        """An output this node received from a job: its rows as JSON (``limit`` rows from
        ``offset``, at most 100,000 a page; ``total`` says how many there are) or the file
        itself. Only outputs written here exist; others are 404."""
        row = service.storage.job(job_id)
        comps = (row.result or {}).get("components", {}) if isinstance(row.result, dict) else {}
        out = comps.get(component, {}).get("outputs", {}).get(output)
        if not isinstance(out, dict) or not Path(str(out.get("path"))).is_file():
            raise NotFoundError(f"no output {component}.{output} of {job_id} here")
        path = Path(str(out["path"]))
        if format == "file":
            return Response(
                path.read_bytes(),
                media_type="application/octet-stream",
                headers={"Content-Disposition": f'attachment; filename="{path.name}"'},
            )
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
        start = max(0, offset)
        rows = table.slice(start, max(0, min(limit, 100_000))).to_pylist()
        page = {"rows": rows, "offset": start, "total": table.num_rows}
        return JSONResponse(jsonable({**page, "columns": table.column_names}))

    @r.get("/v1/components")
    def components(user: UserRow = Depends(may("jobs.read"))) -> list[dict[str, Any]]:
        """Every registered component: summary, outputs and its parameters' JSON schema
        (what the console's job builder generates its forms from)."""
        from rainbridge.components import component_types, get_component

        return [get_component(t).describe() for t in component_types()]

    return r


def jsonable(x: Any) -> Any:
    """Rows as JSON can carry them (dates and decimals as text, NaN as null)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, str | int | float | bool) or x is None:
        return x
    return str(x)
