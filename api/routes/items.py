"""Items: detail (``GET /items/{id}``), more like this (``/similar``), a thumbnail, upload
(``POST /items``, indexed in the background) and delete (``DELETE /items/{id}``)."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from PIL import Image

from api.guards import DecodeBudget
from api.jobs import Job, Rejected
from api.routes import Shared, depth, page, shared
from api.schemas import ERRORS, PAGE_NOTE, Deleted, SearchResponse, ThumbnailSize
from indexer.errors import ImageError
from indexer.images import decode_image, load_image
from indexer.records import ItemRecord
from retriever.query import MAX_K

MAX_UPLOAD_FILES = 50
WRITE_WAIT_SECONDS = 10  # a delete waits this long for an upload job to finish, then answers 409
THUMBNAILS_CACHED = 512

router = APIRouter()


@router.get("/items/{item_id}", response_model=ItemRecord, responses=ERRORS)
def item(item_id: int, app: Shared = Depends(shared)) -> ItemRecord:
    """What the experts saw in one item, and both verbalizations (MoAI's and the retrieval one)."""
    return app.served.read(lambda engine: engine.inspect(item_id))


@router.get("/items/{item_id}/similar", response_model=SearchResponse, responses=ERRORS)
def similar(
    item_id: int,
    k: int = Query(10, ge=1, le=MAX_K - 1),
    offset: int = Query(0, ge=0, le=MAX_K - 1, description=PAGE_NOTE),
    app: Shared = Depends(shared),
) -> SearchResponse:
    """Items like this one (the item itself left out)."""
    hits = app.served.read(lambda engine: engine.similar(item_id, k=depth(offset, k)))
    return page(hits, offset, k)


@lru_cache(maxsize=THUMBNAILS_CACHED)
def thumbnail_bytes(decodes: DecodeBudget, path: str, mtime_ns: int, size: int, indexed_hash: str) -> bytes:
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


@router.get(
    "/items/{item_id}/thumbnail", responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}}, response_class=Response
)
def thumbnail(
    request: Request,
    item_id: int,
    size: ThumbnailSize = Query(ThumbnailSize.medium, description="Longest side in pixels."),
    app: Shared = Depends(shared),
) -> Response:
    """A JPEG of the item's image, its longest side ``size`` pixels (cached; revalidated by
    ETag, so an item id that comes back after a delete never shows the old picture). Only a
    file whose bytes are still those indexed is shown."""
    record = app.served.read(lambda engine: engine.inspect(item_id))
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
            jpeg = thumbnail_bytes(app.decodes, path, mtime_ns, int(size), record.content_hash)
            return Response(jpeg, media_type="image/jpeg", headers=headers)
        except (ImageError, OSError) as e:
            problem = str(e)
    raise HTTPException(404, f"item {item_id}'s image cannot be shown now: {problem}")


@router.post("/items", response_model=Job, status_code=202, responses=ERRORS)
async def upload(
    images: list[UploadFile] = File(..., description=f"One or more images (at most {MAX_UPLOAD_FILES})."),
    app: Shared = Depends(shared),
) -> Job:
    """Add images: each is checked (a readable image, within the size and pixel limits), saved
    in the uploads folder and indexed in the background. Poll ``GET /jobs/{id}`` for progress;
    searches keep answering meanwhile. Unreadable images are listed in the job's ``rejected``."""
    if len(images) > MAX_UPLOAD_FILES:
        raise HTTPException(413, f"at most {MAX_UPLOAD_FILES} images per upload ({len(images)} sent)")
    saved: dict[Path, str] = {}
    rejected: list[Rejected] = []
    for image in images:
        name = image.filename or "upload"
        data = await app.read_upload(image)
        try:
            with app.decodes.held(data):
                loaded = await run_in_threadpool(decode_image, data)  # the same checks as indexing, bomb guard included
        except ImageError as e:
            rejected.append(Rejected(name=name, reason=str(e)))
            continue
        saved[await run_in_threadpool(app.queue.save, name, data, loaded.format)] = name
    if not saved:
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in rejected)
        raise HTTPException(400, f"no image in the upload could be read ({reasons})")
    return app.queue.submit(saved, rejected)


@router.delete("/items/{item_id}", response_model=Deleted, responses=ERRORS)
def delete(item_id: int, app: Shared = Depends(shared)) -> Deleted:
    """Take an item out of the index. Its files stay on disk, except uploads, which are deleted."""
    served = app.served
    paths = served.read(lambda engine: engine.inspect(item_id).paths)
    if not served.changes.acquire(timeout=WRITE_WAIT_SECONDS):
        raise HTTPException(
            409, "an upload is being indexed; try again when its job is done", headers={"Retry-After": "5"}
        )
    try:
        with served.engine.writer() as writer:  # the index's write lock only while changing
            writer.remove(paths)
        served.reload()
        remaining = len(served.engine)
    finally:
        served.changes.release()
    for path in map(Path, paths):
        if path.parent == app.queue.folder:  # an upload: it would be indexed again at the next start
            path.unlink(missing_ok=True)
    return Deleted(removed=len(paths), items=remaining)
