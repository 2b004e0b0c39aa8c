"""Answers from the collection (``POST /ask``): server-sent events as they are generated, or one JSON answer."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from api.routes import Shared, shared
from api.schemas import ERRORS, AskRequest, ErrorBody
from indexer.errors import MoairError
from retriever.generative.ask import Answer

router = APIRouter()


@router.post(
    "/ask",
    response_model=Answer,
    responses={
        **ERRORS,
        200: {
            "description": "The answer: server-sent events (`sources`, `token`..., `answer`, or `error`), "
            "or one JSON Answer with stream false.",
            "content": {"text/event-stream": {}},
        },
    },
)
async def ask(request: AskRequest, app: Shared = Depends(shared)):
    """Answer a question from the collection, citing the items it used."""
    options = {"k": request.k, "time_budget": app.budget(request.time_budget), "min_score": request.min_score}
    await app.served.generator_ready(options["time_budget"])
    if not request.stream:
        return await app.served.search(lambda engine: engine.ask(request.question, **options), generative=True)

    answer = app.served.stream(lambda engine: engine.ask_stream(request.question, **options))

    async def events():
        try:
            async for event in answer:
                yield f"event: {event.event}\ndata: {event.model_dump_json()}\n\n"
        except MoairError as error:
            yield f"event: error\ndata: {ErrorBody(error=str(error)).model_dump_json()}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
