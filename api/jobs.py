"""Uploads indexed in the background: the HTTP API saves uploaded images into the uploads folder and
a single worker thread indexes them, one job at a time, while searches go on.

A job indexes through a writable view of the served engine (``Engine.writer``: the index's write
lock is held only by the job, the models are the engine's), so
the served engine keeps answering from its open view; when the job ends the engine reloads (a short
pause) and the new items become searchable. Uploaded files are written
atomically; files an interrupted server saved but never indexed are indexed when it starts again.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from api.served import ServedEngine
from indexer.errors import MoairError
from indexer.images import IMAGE_SUFFIXES, content_hash
from indexer.shards import durable_replace
from indexer.store import Store

JOBS_KEPT = 100  # finished jobs remembered for GET /jobs
TEMP_PREFIX = ".upload-"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Rejected(BaseModel):
    """An uploaded file that was not indexed, and why."""

    name: str
    reason: str


class Job(BaseModel):
    """One upload being indexed in the background; poll ``GET /jobs/{id}`` for progress."""

    id: str
    state: Literal["queued", "running", "done", "failed"] = "queued"
    total: int = Field(description="Images accepted for indexing.")
    done: int = Field(0, description="Images processed so far.")
    added: int = Field(0, description="New content, analysed and embedded.")
    linked: int = Field(0, description="Content already indexed under another file.")
    unchanged: int = Field(0, description="The same file was uploaded before.")
    rejected: list[Rejected] = Field(default_factory=list)
    item_ids: list[int] = Field(default_factory=list, description="Items of the accepted images, once indexed.")
    error: str | None = None
    created: float = Field(default_factory=time.time, description="Unix time.")
    finished: float | None = None


def safe_name(name: str, digest: str, suffix: str) -> str:
    """The file name an upload is saved as: its content digest and a cleaned-up stem of the name it
    came with. Nothing in the client's name can reach outside the uploads folder."""
    stem = _UNSAFE.sub("-", Path(name.replace("\\", "/")).stem).strip(".-")[:60]
    return f"{digest[:16]}-{stem}{suffix}" if stem else f"{digest[:16]}{suffix}"


class UploadQueue:
    """Saves uploads and indexes them one job at a time in a background thread."""

    def __init__(self, served: ServedEngine, folder: Path) -> None:
        self.served = served
        self.folder = folder
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._jobs_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="moair-upload")

    def save(self, name: str, data: bytes, image_format: str) -> Path:
        """Write one validated upload into the uploads folder (atomically; same bytes and name, same
        file). Its suffix is the uploaded name's when that names an image type, else the format's."""
        self.folder.mkdir(parents=True, exist_ok=True)
        digest = content_hash(data)
        suffix = Path(name).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            suffix = f".{image_format.lower()}" if f".{image_format.lower()}" in IMAGE_SUFFIXES else ".img"
        target = self.folder / safe_name(name, digest, suffix)
        if not target.exists():
            temp = self.folder / f"{TEMP_PREFIX}{digest[:16]}-{threading.get_ident()}"
            temp.write_bytes(data)
            durable_replace(temp, target)
        return target

    def submit(self, files: dict[Path, str], rejected: list[Rejected]) -> Job:
        """Queue ``files`` (saved path -> the name it was uploaded as) for indexing; ``rejected``
        are reported with the job."""
        job = Job(id=f"{int(time.time())}-{next(self._ids)}", total=len(files), rejected=rejected)
        with self._jobs_lock:
            self._jobs[job.id] = job
            while len(self._jobs) > JOBS_KEPT:
                self._jobs.popitem(last=False)
        if files:
            self._worker.submit(self._run, job, files)
        else:
            self._update(job, state="failed", error="no image in the upload could be read", finished=time.time())
        return job.model_copy(deep=True)

    def resume(self) -> Job | None:
        """Queue uploads a previous server saved but did not get to index (it was stopped or killed)."""
        if not self.folder.is_dir():
            return None
        for temp in self.folder.glob(f"{TEMP_PREFIX}*"):
            temp.unlink(missing_ok=True)  # a write cut short; its request was never answered
        store = self.served.engine.store
        pending = [
            p
            for p in sorted(self.folder.iterdir())
            if p.is_file() and store.catalog.file_state(str(p)) is None and _worth_trying(store, p)
        ]
        return self.submit({p: p.name for p in pending}, []) if pending else None

    def get(self, job_id: str) -> Job | None:
        with self._jobs_lock:
            job = self._jobs.get(job_id)
            return job.model_copy(deep=True) if job else None

    def all(self) -> list[Job]:
        with self._jobs_lock:
            return [job.model_copy(deep=True) for job in reversed(self._jobs.values())]

    def close(self) -> None:
        """Finish the queued jobs, then stop the worker."""
        self._worker.shutdown(wait=True)

    def _update(self, job: Job, **changes) -> None:
        with self._jobs_lock:
            for name, value in changes.items():
                setattr(job, name, value)

    def _run(self, job: Job, files: dict[Path, str]) -> None:
        self._update(job, state="running")
        try:
            engine = self.served.engine
            with self.served.changes, engine.writer() as writer:
                report = writer.add(list(files), progress=lambda done, total: self._update(job, done=done))
                self.served.reload()
            item_ids = self.served.read(lambda engine: [engine.store.catalog.item_id_for_path(str(f)) for f in files])
        except MoairError as e:
            self._update(job, state="failed", error=str(e), finished=time.time())
            return
        except Exception as e:  # the worker must survive any one job
            self._update(job, state="failed", error=f"{type(e).__name__}: {e}", finished=time.time())
            return
        names = {str(path): name for path, name in files.items()}
        not_indexed = report.skipped + report.failed
        rejected = job.rejected + [
            Rejected(name=names.get(path, Path(path).name), reason=reason) for path, reason in not_indexed
        ]
        self._update(
            job,
            state="done",
            done=len(files),
            added=report.added + report.updated,
            linked=report.linked,
            unchanged=report.unchanged,
            rejected=rejected,
            item_ids=[i for i in item_ids if i is not None],
            finished=time.time(),
        )


def _worth_trying(store: Store, path: Path) -> bool:
    """Not known as a bad file: never tried, or it failed to be read or analysed."""
    skipped = store.catalog.skipped_state(str(path))
    return skipped is None or skipped.retried
