"""The HTTP API: ``moair serve --index PATH`` (FastAPI on uvicorn); OpenAPI at ``/docs``.

Every route but ``/health`` (and the web page and the docs) asks for the API key when
``MOAIR_API_KEY`` (or ``api_key``) is set, as an ``X-API-Key`` header or ``Authorization: Bearer
KEY``, before any request body is read. Host names and cross-site requests are checked first (see
``api.guards``). Errors are JSON ``{"error": ...}`` with a status code that says what went wrong
(400 bad input, 401 key, 403 another site's page, 404 unknown item or route, 405 method, 413
upload too large, 409 busy index, 421 unknown host name, 422 invalid request, 500 damaged index or
a bug, 503 busy: retry after the Retry-After seconds). File paths never come from a request: a
thumbnail is read from the path the index stored for that item (only while its bytes are those
indexed), and an upload is saved under a name made from its content digest in the uploads folder.
"""

from __future__ import annotations

import os
import re
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.guards import DEFAULT_DECODE_BUDGET, DecodeBudget, RequestGuard, send_error
from api.jobs import UploadQueue
from api.routes import Shared, ask, items, jobs, search, status
from api.schemas import ERROR_STATUS
from api.served import ServedEngine
from indexer.errors import Busy, MoairError
from retriever import Engine

MAX_UPLOAD_BYTES = 20 * 2**20  # one image
DEFAULT_MAX_TIME_BUDGET = 120.0  # seconds of generative work per request, at most
MAX_REQUEST_BYTES = 100 * 2**20  # one request body, all its images together
STATIC = Path(__file__).parent / "static"  # the web page: plain files, no CDN


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before more of it is
    read, whether or not it announces a Content-Length."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        received, exceeded, started = 0, False, False

        async def counted_receive():
            nonlocal received, exceeded
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                exceeded = True
                raise ValueError("request body too large")
            return message

        async def guarded_send(message) -> None:
            nonlocal started
            if exceeded:  # whatever the app makes of the cut-off body, the answer is 413
                if not started:
                    started = True
                    await self._refuse(send)
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except ValueError:
            if not exceeded:
                raise
            if not started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        await send_error(send, 413, f"the request is larger than {self.limit // 2**20} MiB")


def create_app(
    index_path: str | Path,
    api_key: str | None = None,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    uploads: str | Path | None = None,
    cors_origins: tuple[str, ...] = (),
    device: str = "auto",
    dtype: str = "auto",
    max_time_budget: float = DEFAULT_MAX_TIME_BUDGET,
    allowed_hosts: tuple[str, ...] = (),
    decode_budget: int = DEFAULT_DECODE_BUDGET,
) -> FastAPI:
    """The app serving one index. ``api_key`` defaults to ``MOAIR_API_KEY``; "" means none.
    Uploaded images are saved in ``uploads`` (default: the index's ``uploads`` folder) and
    indexed in the background. ``cors_origins`` lists the web origins allowed to call the API
    from a browser (none by default). ``device`` and ``dtype`` place a checkpoint backbone.
    ``max_time_budget`` caps the seconds of generative work (rerank, answers) one request gets.
    ``allowed_hosts`` are the host names it answers to besides IP addresses and localhost;
    ``decode_budget`` the bytes image decodes may hold at once (see ``api.guards``)."""
    api_key = (api_key if api_key is not None else os.environ.get("MOAIR_API_KEY")) or None  # "": no key
    if api_key is not None and not re.fullmatch(r"[\x21-\x7e]+", api_key):
        # HTTP headers carry ASCII: any other key could never be sent, and every request would get 401
        raise MoairError(
            "the API key (MOAIR_API_KEY) must be printable ASCII without spaces; choose another, e.g. python -c "
            "'import secrets; print(secrets.token_urlsafe())'"
        )
    engine = Engine.open(index_path, device=device, dtype=dtype)
    served = ServedEngine(engine)
    queue = UploadQueue(served, Path(uploads).expanduser().absolute() if uploads else engine.store.path / "uploads")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        queue.resume()
        yield
        await run_in_threadpool(queue.close)
        await run_in_threadpool(served.close)

    app = FastAPI(
        title="moair",
        description="Search a photo collection by text, image, or both.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.moair = Shared(served, queue, DecodeBudget(decode_budget), api_key, max_upload_bytes, max_time_budget)
    app.add_middleware(BodyLimit, limit=max_request_bytes)
    app.add_middleware(RequestGuard, api_key=api_key, allowed_hosts=allowed_hosts, cors_origins=cors_origins)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )

    @app.exception_handler(MoairError)
    async def moair_error(request: Request, error: MoairError) -> JSONResponse:
        status = next((code for kind, code in ERROR_STATUS.items() if isinstance(error, kind)), 400)
        retry = {"Retry-After": str(error.retry_after)} if isinstance(error, Busy) else None
        return JSONResponse({"error": str(error)}, status_code=status, headers=retry)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's, and Starlette's own (unknown route, 405, bad multipart)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(
            {"error": f"internal error ({type(error).__name__}); the server log has the details"}, status_code=500
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def web_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    for routes in (status, search, ask, items, jobs):
        app.include_router(routes.router)
    return app
