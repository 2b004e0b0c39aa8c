"""The HTTP routes, one module a resource: ``search`` (text, image), ``ask``, ``items`` (detail,
similar, thumbnail, upload, delete), ``jobs`` and ``status`` (health, stats, verify). Each route
takes what the app shares from ``app.state.moair`` (a ``Shared``, made by ``api.server.create_app``)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request, UploadFile

from api.guards import DecodeBudget
from api.jobs import UploadQueue
from api.schemas import SearchResponse
from api.served import ServedEngine
from indexer.records import SearchHit
from retriever.query import MAX_K


@dataclass
class Shared:
    """What the routes of one app share: the served engine, the upload queue, the decode budget,
    and the server's limits."""

    served: ServedEngine
    queue: UploadQueue
    decodes: DecodeBudget
    api_key: str | None
    max_upload_bytes: int
    max_time_budget: float

    def budget(self, asked: float | None) -> float:
        """A request's time budget, within the server's cap."""
        return min(asked if asked is not None else self.max_time_budget, self.max_time_budget)

    async def read_upload(self, upload: UploadFile) -> bytes:
        data = await upload.read(self.max_upload_bytes + 1)
        if len(data) > self.max_upload_bytes:
            raise HTTPException(
                413, f"{upload.filename or 'the image'} is larger than {self.max_upload_bytes // 2**20} MiB"
            )
        return data


def shared(request: Request) -> Shared:
    """The route dependency that hands a route its app's ``Shared``."""
    return request.app.state.moair


def depth(offset: int, k: int) -> int:
    """How many hits to search for to serve this page."""
    return min(offset + k, MAX_K)


def page(hits: list[SearchHit], offset: int, k: int) -> SearchResponse:
    return SearchResponse(hits=hits[offset : offset + k], offset=offset, k=k)
