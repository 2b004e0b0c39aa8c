"""Upload jobs (``GET /jobs``, ``GET /jobs/{id}``): images added through ``POST /items``, indexed in the background."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from api.jobs import Job
from api.routes import Shared, shared
from api.schemas import ERRORS

router = APIRouter()


@router.get("/jobs", response_model=list[Job], responses=ERRORS)
def jobs(app: Shared = Depends(shared)) -> list[Job]:
    """Recent upload jobs, newest first."""
    return app.queue.all()


@router.get("/jobs/{job_id}", response_model=Job, responses=ERRORS)
def job(job_id: str, app: Shared = Depends(shared)) -> Job:
    """One upload job: its state and progress, and the ids of the items it added."""
    found = app.queue.get(job_id)
    if found is None:
        raise HTTPException(404, f"no upload job {job_id} (jobs are kept while the server runs)")
    return found
