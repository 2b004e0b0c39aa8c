"""The index's state: ``GET /health`` (open without a key), ``/stats`` and ``/verify``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request

from api.guards import key_matches
from api.routes import Shared, shared
from api.schemas import ERRORS, Health
from indexer.store import IndexStats, VerifyReport
from retriever import Engine

router = APIRouter()


@router.get("/health", response_model=Health, responses=ERRORS)
def health(request: Request, detail: bool = False, app: Shared = Depends(shared)) -> Health:
    """Liveness (no API key needed); ``detail=true`` also loads and runs each model of the index
    once, as ``moair doctor --index`` does, and lists the package versions (this needs the key)."""
    if not detail:
        return Health(status="ok", items=app.served.read(len))
    # the one route open without a key whose detail needs it (the others are guarded by RequestGuard)
    if app.api_key is not None and not key_matches(dict(request.headers), app.api_key):
        raise HTTPException(401, "missing or wrong API key (send X-API-Key)", headers={"WWW-Authenticate": "Bearer"})
    checks = app.served.read(Engine.check_models)
    return Health(
        status="failing" if any(c.ok is False for c in checks) else "ok", items=app.served.read(len), models=checks
    )


@router.get("/stats", response_model=IndexStats, responses=ERRORS)
def stats(app: Shared = Depends(shared)) -> IndexStats:
    return app.served.read(Engine.stats)


@router.get("/verify", response_model=VerifyReport, responses=ERRORS)
def verify(app: Shared = Depends(shared)) -> VerifyReport:
    """Check the whole index, as ``moair verify`` does (it reads every page: slow on a big index)."""
    return app.served.read(Engine.verify)
