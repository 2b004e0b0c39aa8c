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

import io
import os
import re
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from enum import IntEnum
from typing import Literal, Optional

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from indexer.errors import DamagedIndex, ImageError, Locked, MoairError, NotFound
from indexer.images import decode_image, load_image
from indexer.model_check import ModelCheck
from indexer.records import ItemRecord, Modality, SearchHit
from indexer.store import IndexStats, Store, VerifyReport
from retriever import Engine
from retriever.engine import DEFAULT_ASK_BUDGET, MAX_BUDGET, MAX_K, MAX_RERANK
from retriever.generative.ask import SUPPORT_FLOOR, Answer

from api.guards import DEFAULT_DECODE_BUDGET, Busy, DecodeBudget, RequestGuard, key_matches, send_error
from api.jobs import Job, Rejected, UploadQueue
from api.served import ServedEngine

MAX_UPLOAD_BYTES = 20 * 2**20  # one image
DEFAULT_MAX_TIME_BUDGET = 120.0  # seconds of generative work per request, at most
MAX_REQUEST_BYTES = 100 * 2**20  # one request body, all its images together
MAX_UPLOAD_FILES = 50
WRITE_WAIT_SECONDS = 10  # a delete waits this long for an upload job to finish, then answers 409
class ThumbnailSize(IntEnum):
    """Longest side of a thumbnail, in pixels."""

    small = 128
    medium = 256
    large = 512
THUMBNAILS_CACHED = 512
STATIC = Path(__file__).parent / "static"  # the web page: plain files, no CDN


PAGE_NOTE = f"Skip this many hits (pagination). Search goes {MAX_K} hits deep: a page past that comes back short or empty."


# A character that is not a space, as Python's str.strip sees spaces: besides Unicode's White_Space
# (regex \s), it strips the separators U+001C..U+001F, so "\x1f" alone is no query.
VISIBLE = r"[^\s\x1c-\x1f]"


class SearchRequest(BaseModel):
    """A text search (English or Korean)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored

    text: str = Field(min_length=1, max_length=2000, pattern=VISIBLE, description="The query; needs a character that is not a space.")
    k: int = Field(10, ge=1, le=MAX_K)
    offset: int = Field(0, ge=0, le=MAX_K - 1, description=PAGE_NOTE)
    modality: Optional[Modality] = None
    min_score: Optional[float] = None
    max_drop: Optional[float] = Field(None, ge=0)
    rerank: int = Field(0, ge=0, le=MAX_RERANK, description='Re-score the top N hits with a generative model as P("Yes") that they match.')
    time_budget: Optional[float] = Field(None, gt=0, le=MAX_BUDGET, description="Seconds the re-scoring may take (within the server's cap).")


class SearchResponse(BaseModel):
    hits: list[SearchHit]
    offset: int
    k: int
    reranked_by: Optional[str] = None  # the generator whose P("Yes") ordered the hits (rerank_score)


class AskRequest(BaseModel):
    """A question answered from the collection."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000, pattern=VISIBLE)
    k: int = Field(5, ge=1, le=50, description="Items retrieved to answer from.")
    min_score: float = Field(SUPPORT_FLOOR, description="Retrieval score an item needs to be a source.")
    time_budget: float = Field(DEFAULT_ASK_BUDGET, gt=0, le=MAX_BUDGET, description="Seconds for the whole answer (within the server's cap).")
    stream: bool = Field(True, description="Server-sent events (sources, token..., answer) instead of one JSON answer.")


class Health(BaseModel):
    status: Literal["ok", "failing"]  # failing: a model of the index does not load or run (detail=true checks them)
    items: int
    models: Optional[list[ModelCheck]] = None  # with detail=true: each model, its packages, whether it runs


class Deleted(BaseModel):
    removed: int
    items: int


class ErrorBody(BaseModel):
    error: str


ERROR_STATUS = {NotFound: 404, Locked: 409, DamagedIndex: 500}  # any other MoairError: 400 (bad input)
ERRORS = {code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 421, 422, 500, 503)}


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
        raise MoairError("the API key (MOAIR_API_KEY) must be printable ASCII without spaces; choose another, e.g. python -c 'import secrets; print(secrets.token_urlsafe())'")
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
        title="moair", description="Search a photo collection by text, image, or both.", version="0.1.0", lifespan=lifespan
    )
    app.state.engine = engine
    decodes = DecodeBudget(decode_budget)
    app.add_middleware(BodyLimit, limit=max_request_bytes)
    app.add_middleware(RequestGuard, api_key=api_key, allowed_hosts=allowed_hosts, cors_origins=cors_origins)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )

    @app.exception_handler(MoairError)
    async def moair_error(request: Request, error: MoairError) -> JSONResponse:
        status = next((code for kind, code in ERROR_STATUS.items() if isinstance(error, kind)), 400)
        return JSONResponse({"error": str(error)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's, and Starlette's own (unknown route, 405, bad multipart)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Busy)
    async def busy(request: Request, error: Busy) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=503, headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(error).__name__}); the server log has the details"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    def key_required(request: Request) -> None:
        """For the one route open without a key whose detail needs it (the others are guarded by ``RequestGuard``)."""
        if api_key is not None and not key_matches(dict(request.headers), api_key):
            raise HTTPException(401, "missing or wrong API key (send X-API-Key)", headers={"WWW-Authenticate": "Bearer"})

    async def read_upload(upload: UploadFile) -> bytes:
        data = await upload.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"{upload.filename or 'the image'} is larger than {max_upload_bytes // 2**20} MiB")
        return data

    def depth(offset: int, k: int) -> int:
        """How many hits to search for to serve this page."""
        return min(offset + k, MAX_K)

    def budget(asked: Optional[float]) -> float:
        """A request's time budget, within the server's cap."""
        return min(asked if asked is not None else max_time_budget, max_time_budget)

    def page(hits: list[SearchHit], offset: int, k: int) -> SearchResponse:
        return SearchResponse(hits=hits[offset : offset + k], offset=offset, k=k)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def web_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health", response_model=Health, responses=ERRORS)
    def health(request: Request, detail: bool = False) -> Health:
        """Liveness (no API key needed); ``detail=true`` also loads and runs each model of the index
        once, as ``moair doctor --index`` does, and lists the package versions (this needs the key)."""
        if not detail:
            return Health(status="ok", items=served.read(len))
        key_required(request)
        checks = served.read(Engine.check_models)
        return Health(status="failing" if any(c.ok is False for c in checks) else "ok", items=served.read(len), models=checks)

    @app.get("/stats", response_model=IndexStats, responses=ERRORS)
    def stats() -> IndexStats:
        return served.read(Engine.stats)

    @app.get("/verify", response_model=VerifyReport, responses=ERRORS)
    def verify() -> VerifyReport:
        """Check the whole index, as ``moair verify`` does (it reads every page: slow on a big index)."""
        return served.read(Engine.verify)

    @app.post("/search", response_model=SearchResponse, responses=ERRORS)
    async def search(request: SearchRequest) -> SearchResponse:
        """Text search; with ``rerank``, the top hits ordered by a generative model's P("Yes")."""

        def run(engine: Engine) -> tuple[list[SearchHit], Optional[str]]:
            hits = engine.search(
                request.text, k=depth(request.offset, request.k), modality=request.modality, min_score=request.min_score,
                max_drop=request.max_drop, rerank=request.rerank, time_budget=budget(request.time_budget),
            )
            return hits, engine.generator().version if any(h.rerank_score is not None for h in hits) else None

        if request.rerank:
            await served.generator_ready(budget(request.time_budget))
        hits, reranked_by = await served.search(run, generative=request.rerank > 0)
        return page(hits, request.offset, request.k).model_copy(update={"reranked_by": reranked_by})

    @app.post(
        "/ask", response_model=Answer,
        responses={**ERRORS, 200: {"description": "The answer: server-sent events (`sources`, `token`..., `answer`, or `error`), "
                                   "or one JSON Answer with stream false.", "content": {"text/event-stream": {}}}},
    )
    async def ask(request: AskRequest):
        """Answer a question from the collection, citing the items it used."""
        options = {"k": request.k, "time_budget": budget(request.time_budget), "min_score": request.min_score}
        await served.generator_ready(options["time_budget"])
        if not request.stream:
            return await served.search(lambda engine: engine.ask(request.question, **options), generative=True)

        answer = served.stream(lambda engine: engine.ask_stream(request.question, **options))

        async def events():
            try:
                async for event in answer:
                    yield f"event: {event.event}\ndata: {event.model_dump_json()}\n\n"
            except MoairError as error:
                yield f"event: error\ndata: {ErrorBody(error=str(error)).model_dump_json()}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/search/image", response_model=SearchResponse, responses=ERRORS)
    async def search_image(
        image: UploadFile = File(..., description="The query image."),
        text: Optional[str] = Form(None, max_length=2000, description="Text to combine with the image."),
        k: int = Form(10, ge=1, le=MAX_K),
        offset: int = Form(0, ge=0, le=MAX_K - 1, description=PAGE_NOTE),
        modality: Optional[Modality] = Form(None),
    ) -> SearchResponse:
        """Image search ("more like this picture"), or image + text."""
        data = await read_upload(image)
        with decodes.held(data):
            hits = await served.search(lambda engine: engine.search(text or None, image=data, k=depth(offset, k), modality=modality))
        return page(hits, offset, k)

    @app.get("/items/{item_id}", response_model=ItemRecord, responses=ERRORS)
    def item(item_id: int) -> ItemRecord:
        """What the experts saw in one item, and both verbalizations (MoAI's and the retrieval one)."""
        return served.read(lambda engine: engine.inspect(item_id))

    @app.get("/items/{item_id}/similar", response_model=SearchResponse, responses=ERRORS)
    def similar(item_id: int, k: int = Query(10, ge=1, le=MAX_K - 1), offset: int = Query(0, ge=0, le=MAX_K - 1, description=PAGE_NOTE)) -> SearchResponse:
        """Items like this one (the item itself left out)."""
        hits = served.read(lambda engine: engine.similar(item_id, k=depth(offset, k)))
        return page(hits, offset, k)

    @lru_cache(maxsize=THUMBNAILS_CACHED)
    def thumbnail_bytes(path: str, mtime_ns: int, size: int, indexed_hash: str) -> bytes:
        # decoded as for indexing: the decompression-bomb guard, EXIF rotation, any mode to RGB
        with decodes.held(path):
            loaded = load_image(path)
        if loaded.content_hash != indexed_hash:  # another file now, or a link swapped for one
            raise ImageError("the file changed since it was indexed (moair index updates it)")
        image = Image.fromarray(loaded.rgb)
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85)
        return out.getvalue()

    @app.get(
        "/items/{item_id}/thumbnail",
                responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}},
        response_class=Response,
    )
    def thumbnail(
        request: Request, item_id: int, size: ThumbnailSize = Query(ThumbnailSize.medium, description="Longest side in pixels.")
    ) -> Response:
        """A JPEG of the item's image, its longest side ``size`` pixels (cached; revalidated by
        ETag, so an item id that comes back after a delete never shows the old picture). Only a
        file whose bytes are still those indexed is shown."""
        record = served.read(lambda engine: engine.inspect(item_id))
        files = [p for p in record.paths if record.modality == "image" and Path(p).is_absolute() and Path(p).is_file()]
        if not files:
            raise HTTPException(404, f"item {item_id} has no image file to show")
        problem = ""
        for path in files:
            try:
                mtime_ns = Path(path).stat().st_mtime_ns
                tag = f'"{record.content_hash[:16]}-{mtime_ns}-{int(size)}"'
                headers = {"Cache-Control": "private, no-cache", "ETag": tag}
                if request.headers.get("if-none-match") == tag:
                    return Response(status_code=304, headers=headers)
                return Response(thumbnail_bytes(path, mtime_ns, int(size), record.content_hash), media_type="image/jpeg", headers=headers)
            except (ImageError, OSError) as e:
                problem = str(e)
        raise HTTPException(404, f"item {item_id}'s image cannot be shown now: {problem}")

    @app.post("/items", response_model=Job, status_code=202, responses=ERRORS)
    async def upload(images: list[UploadFile] = File(..., description=f"One or more images (at most {MAX_UPLOAD_FILES}).")) -> Job:
        """Add images: each is checked (a readable image, within the size and pixel limits), saved
        in the uploads folder and indexed in the background. Poll ``GET /jobs/{id}`` for progress;
        searches keep answering meanwhile. Unreadable images are listed in the job's ``rejected``."""
        if len(images) > MAX_UPLOAD_FILES:
            raise HTTPException(413, f"at most {MAX_UPLOAD_FILES} images per upload ({len(images)} sent)")
        saved: dict[Path, str] = {}
        rejected: list[Rejected] = []
        for image in images:
            name = image.filename or "upload"
            data = await read_upload(image)
            try:
                with decodes.held(data):
                    loaded = await run_in_threadpool(decode_image, data)  # the same checks as indexing, bomb guard included
            except ImageError as e:
                rejected.append(Rejected(name=name, reason=str(e)))
                continue
            saved[await run_in_threadpool(queue.save, name, data, loaded.format)] = name
        if not saved:
            reasons = "; ".join(f"{r.name}: {r.reason}" for r in rejected)
            raise HTTPException(400, f"no image in the upload could be read ({reasons})")
        return queue.submit(saved, rejected)

    @app.get("/jobs", response_model=list[Job], responses=ERRORS)
    def jobs() -> list[Job]:
        """Recent upload jobs, newest first."""
        return queue.all()

    @app.get("/jobs/{job_id}", response_model=Job, responses=ERRORS)
    def job(job_id: str) -> Job:
        """One upload job: its state and progress, and the ids of the items it added."""
        found = queue.get(job_id)
        if found is None:
            raise HTTPException(404, f"no upload job {job_id} (jobs are kept while the server runs)")
        return found

    @app.delete("/items/{item_id}", response_model=Deleted, responses=ERRORS)
    def delete(item_id: int) -> Deleted:
        """Take an item out of the index. Its files stay on disk, except uploads, which are deleted."""
        paths = served.read(lambda engine: engine.inspect(item_id).paths)
        if not served.changes.acquire(timeout=WRITE_WAIT_SECONDS):
            raise HTTPException(409, "an upload is being indexed; try again when its job is done", headers={"Retry-After": "5"})
        try:
            with Store.open(engine.store.path, writable=True) as writer:  # the index's write lock only while changing
                writer.commit(removed_paths=paths)
                writer.maintain()
            served.reload()
            remaining = len(engine)
        finally:
            served.changes.release()
        for path in map(Path, paths):
            if path.parent == queue.folder:  # an upload: it would be indexed again at the next start
                path.unlink(missing_ok=True)
        return Deleted(removed=len(paths), items=remaining)

    return app
