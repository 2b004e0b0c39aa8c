"""Search by text (``POST /search``, with rerank) and by image or image + text (``POST /search/image``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, UploadFile

from api.routes import Shared, depth, page, shared
from api.schemas import ERRORS, PAGE_NOTE, SearchRequest, SearchResponse
from indexer.records import Modality, SearchHit
from retriever import Engine
from retriever.query import MAX_K

router = APIRouter()


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
async def search(request: SearchRequest, app: Shared = Depends(shared)) -> SearchResponse:
    """Text search; with ``rerank``, the top hits ordered by a generative model's P("Yes")."""
    budget = app.budget(request.time_budget)

    def run(engine: Engine) -> tuple[list[SearchHit], str | None]:
        hits = engine.search(
            request.text,
            k=depth(request.offset, request.k),
            modality=request.modality,
            min_score=request.min_score,
            max_drop=request.max_drop,
            rerank=request.rerank,
            time_budget=budget,
        )
        return hits, engine.reranked_by(hits)

    if request.rerank:
        await app.served.generator_ready(budget)
    hits, reranked_by = await app.served.search(run, generative=request.rerank > 0)
    return page(hits, request.offset, request.k).model_copy(update={"reranked_by": reranked_by})


@router.post("/search/image", response_model=SearchResponse, responses=ERRORS)
async def search_image(
    image: UploadFile = File(..., description="The query image."),
    text: str | None = Form(None, max_length=2000, description="Text to combine with the image."),
    k: int = Form(10, ge=1, le=MAX_K),
    offset: int = Form(0, ge=0, le=MAX_K - 1, description=PAGE_NOTE),
    modality: Modality | None = Form(None),
    app: Shared = Depends(shared),
) -> SearchResponse:
    """Image search ("more like this picture"), or image + text."""
    data = await app.read_upload(image)
    with app.decodes.held(data):
        hits = await app.served.search(
            lambda engine: engine.search(text or None, image=data, k=depth(offset, k), modality=modality)
        )
    return page(hits, offset, k)
