"""Indexing: find images, skip what is already indexed, analyse the rest, commit in batches.

Files are processed by a pool of worker threads, one per core (up to ``INDEX_WORKERS``): each
reads, hashes, decodes, analyses and embeds whole files with its own single-threaded copy of the
models (see ``indexer.packaged_models``), while this thread commits their results in order.

Before the first file is read, every model is loaded and run once on a small image
(``Analyzer.require_working_models``): a broken install stops the run instead of failing on each
photo. A file whose bytes are bad is remembered as such; one that could not be read or analysed
is tried again on the next run. An error that is not about the file (MemoryError, an import
error, a model error, or the same error on several different files) stops the run; what was
committed before it stays.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from indexer.analyzer import Analyzer, worker_pool
from indexer.errors import ImageError, MoairError, disk_full
from indexer.images import content_hash, decode_image, is_image_path, read_image_file
from indexer.mixture import Layout
from indexer.packaged_models import INDEX_WORKERS
from indexer.records import Entry, IndexReport, Perception
from indexer.store import Batch, FileEntry, NewItem, SkipKind, SkippedFile, Store
from indexer.store.vectors import ProgressCallback

BATCH_SIZE = 16  # new items per commit
IN_FLIGHT = 2 * INDEX_WORKERS + 2  # files submitted ahead, so no worker waits for the next one
SAME_ERROR_STOPS = 3  # the same analysis error on this many different files is not about the files
NOT_ABOUT_THE_FILE = (MemoryError, ImportError, MoairError)  # raised while analysing: the run stops


@dataclass
class _Work:
    """One thing to index: a file (``path`` is the file, ``image`` the same), or an entry
    (``path`` is its key; ``image`` and ``text`` are what it holds)."""

    path: str
    size: int
    mtime_ns: int
    image: str | None
    text: str | None = None


@dataclass
class _Processed:
    """One file after a worker is done with it: not indexed (``error``, of ``kind``), known
    content (``item`` None), or new content analysed and embedded."""

    work: _Work
    digest: str | None = None
    item: NewItem | None = None
    error: str | None = None
    kind: SkipKind = "content"

    def skipped(self) -> SkippedFile:
        return SkippedFile(self.work.path, self.work.size, self.work.mtime_ns, self.error or "", self.kind)


@dataclass
class FoundImages:
    """What ``find_images`` found: image files, the folders walked, and folders it could not list."""

    files: list[Path]
    roots: list[Path]
    unlisted: list[tuple[Path, str]]  # (folder, reason): permission denied, a path longer than PATH_MAX, ...

    def listed(self, path: str) -> bool:
        """Whether the walk saw ``path``'s folder (a path below an unlisted folder may still exist)."""
        return not any(path.startswith(f"{folder}/") for folder, _ in self.unlisted)


def find_images(paths: Iterable[str | Path], skip: Path | None = None) -> FoundImages:
    """Image files below ``paths``. Folders are walked recursively (hidden entries skipped); a
    file named directly is taken whatever its suffix."""
    found = FoundImages([], [], [])

    def unlisted(error: OSError) -> None:
        found.unlisted.append((Path(error.filename), f"cannot list folder: {error.strerror or error}"))

    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if not path.exists():
            raise MoairError(f"no such file or folder: {raw}")
        if path.is_dir():
            found.roots.append(path)
            for dirpath, dirnames, filenames in os.walk(path, onerror=unlisted):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and Path(dirpath, d) != skip)
                found.files.extend(
                    Path(dirpath, f) for f in sorted(filenames) if not f.startswith(".") and is_image_path(Path(f))
                )
        else:
            found.files.append(path)
    found.files = list(dict.fromkeys(found.files))
    return found


def _process(work: _Work, known: Callable[[str], bool], analyzer: Analyzer, layout: Layout) -> _Processed:
    """Read, hash, decode, analyse and embed one file or entry (runs in a worker thread)."""
    data = b""
    if work.image is not None:
        try:
            data = read_image_file(work.image)
        except ImageError as e:
            return _Processed(work, error=str(e))
        except OSError as e:
            return _Processed(work, error=f"cannot read file: {e.strerror or e}", kind="access")
        if not data:
            return _Processed(work, error="empty file (0 bytes)")
    # An image file's hash is its bytes' hash; a given text is hashed in after them.
    digest = content_hash(data + b"\0text\0" + work.text.encode() if work.text else data)
    if known(digest):
        return _Processed(work, digest=digest)
    try:
        image = decode_image(data) if work.image is not None else None
    except ImageError as e:
        return _Processed(work, digest=digest, error=str(e))
    try:
        analysis = analyzer.analyze(image) if image is not None else None
        verbalization, parts = analyzer.describe(analysis, work.text or "")
    except NOT_ABOUT_THE_FILE:
        raise
    except Exception as e:  # one image must not stop the run; the next run tries it again
        reason = " ".join(str(e).split())[:100]  # one line, whatever the model printed
        return _Processed(work, digest=digest, error=f"analysis failed: {type(e).__name__}: {reason}", kind="analysis")
    modality = "image,text" if image is not None and work.text else "image" if image is not None else "text"
    perception = analysis.perception if analysis else Perception(width=0, height=0)
    item = NewItem(digest, perception, verbalization, layout.compose(parts), analyzer.versions(), modality)
    return _Processed(work, digest, item)


@dataclass
class Plan:
    """What an indexing run of some paths has to do, found from the files' sizes and times and the
    catalog alone (no model runs): the files to analyse, the stale items (content hash -> the
    path that re-analyses it), and the indexed and bad paths that are gone from disk."""

    todo: list[_Work]
    stale: dict[str, str]
    gone: list[str]
    bad_gone: list[str]


def plan_files(
    store: Store, paths: Iterable[str | Path], versions: dict[str, str], prune: bool, report: IndexReport
) -> Plan:
    """Plan a run over ``paths`` for models of these ``versions``; the files it will not touch are
    counted in ``report`` (unchanged, bad before, unreadable)."""
    found = find_images(paths, skip=store.path)
    report.failed += [(str(folder), reason) for folder, reason in found.unlisted]
    on_disk = {str(f) for f in found.files}
    # Deletions are applied last, so a file that only moved is linked to its content before the
    # old path's removal would orphan (and delete) that content. Records of bad files that are
    # gone go too; nothing below a folder that could not be listed is taken for deleted.
    gone = [
        p
        for root in found.roots
        if prune
        for p in store.catalog.files_under(root)
        if p not in on_disk and found.listed(p)
    ]
    bad_gone = [
        p
        for root in found.roots
        if prune
        for p in store.catalog.skipped_under(root)
        if p not in on_disk and found.listed(p)
    ]

    # Content analysed by older expert or encoder versions is analysed again, through one of its files.
    stale = store.catalog.stale_items(versions)
    stale_paths = set(stale.values())

    todo: list[_Work] = []
    for f in found.files:
        try:
            stat = f.stat()
        except OSError as e:  # a dangling link, a link loop, a name too long: it may work next time
            report.failed.append((str(f), f"cannot read file: {e.strerror or e}"))
            continue
        indexed = store.catalog.file_state(str(f))
        if (
            indexed
            and (indexed.size, indexed.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
            and str(f) not in stale_paths
        ):
            report.unchanged += 1
            continue
        bad = store.catalog.skipped_state(str(f))
        if bad and not bad.retried and (bad.size, bad.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            report.skipped_before += 1
            continue
        report.retried += bool(bad and bad.retried)
        todo.append(_Work(str(f), stat.st_size, stat.st_mtime_ns, image=str(f)))
    return Plan(todo, stale, gone, bad_gone)


def index_paths(
    store: Store,
    analyzer: Analyzer,
    paths: Iterable[str | Path],
    progress: ProgressCallback | None = None,
    prune: bool = True,
) -> IndexReport:
    """Bring the index up to date with ``paths``: new and changed images are analysed, known
    content is linked without re-embedding, files deleted from a given folder are dropped
    (``prune``). Safe to interrupt: every finished batch is committed."""
    started = time.perf_counter()
    report = IndexReport()
    plan = plan_files(store, paths, analyzer.versions(), prune, report)
    with _disk_full_said(store, report):
        _index_work(store, analyzer, plan.todo, plan.stale, report, progress, plan.gone, plan.bad_gone)
    report.seconds, report.items_in_index = time.perf_counter() - started, len(store)
    return report


def index_entries(
    store: Store, analyzer: Analyzer, entries: Iterable[Entry], progress: ProgressCallback | None = None
) -> IndexReport:
    """Index entries (key, text and/or image). A key already in the index is unchanged (a key
    names fixed content), unless its item was analysed by older model versions."""
    started = time.perf_counter()
    report = IndexReport()
    stale = store.catalog.stale_items(analyzer.versions())
    stale_keys = set(stale.values())
    todo: list[_Work] = []
    for entry in entries:
        if store.catalog.file_state(entry.key) and entry.key not in stale_keys:
            report.unchanged += 1
            continue
        bad = store.catalog.skipped_state(entry.key)
        if bad and not bad.retried:
            report.skipped_before += 1
            continue
        report.retried += bool(bad)
        image = str(Path(entry.image).expanduser().absolute()) if entry.image else None
        todo.append(_Work(entry.key, 0, 0, image=image, text=entry.text))
    with _disk_full_said(store, report):
        _index_work(store, analyzer, todo, stale, report, progress)
    report.seconds, report.items_in_index = time.perf_counter() - started, len(store)
    return report


@contextlib.contextmanager
def _disk_full_said(store: Store, report: IndexReport) -> Iterator[None]:
    """A full disk during indexing said in one line. What was committed to SQLite stays (the
    FAISS files are a cache of it, rebuilt at the next open), so nothing more is written."""
    try:
        yield
    except Exception as e:
        if not disk_full(e):
            raise
        store.forget_unsaved_vectors()
        raise MoairError(
            f"disk full at {store.path}: {report.added + report.updated} item(s) committed; free space and run again "
            "(the files not done yet are analysed then)"
        ) from None


def _index_work(
    store: Store,
    analyzer: Analyzer,
    todo: Sequence[_Work],
    stale: dict[str, str],
    report: IndexReport,
    progress: ProgressCallback | None,
    removed: Sequence[str] = (),
    bad_removed: Sequence[str] = (),
) -> None:
    """Run ``todo`` through the workers and commit the results in order, in batches; then forget
    the ``removed`` files and the records of ``bad_removed`` files."""
    # Read by the workers (a stale read only costs a wasted analysis); written by this thread.
    known_hashes = store.catalog.content_hashes() - stale.keys()
    known = known_hashes.__contains__

    new_items: list[NewItem] = []
    entries: list[FileEntry] = []
    skipped: list[SkippedFile] = []
    same_error: Counter[str] = Counter()  # analysis errors, numbers blanked out, by how many files had them

    def flush() -> None:
        store.commit(Batch(new_items=new_items, files=entries, skipped=skipped))
        updated = sum(item.content_hash in stale for item in new_items)
        report.updated += updated
        report.added += len(new_items) - updated
        new_items.clear()
        entries.clear()
        skipped.clear()

    if todo:
        analyzer.require_working_models()
    pool = worker_pool()
    upcoming = iter(todo)
    queue: deque[Future] = deque()

    def submit_next() -> None:
        work = next(upcoming, None)
        if work is not None:
            queue.append(pool.submit(_process, work, known, analyzer, store.config.layout))

    done = 0
    try:
        for _ in range(IN_FLIGHT):
            submit_next()
        while queue:
            processed: _Processed = queue.popleft().result()  # in submission order
            submit_next()
            work = processed.work
            if processed.error:
                skip = processed.skipped()
                (report.failed if skip.retried else report.skipped).append((work.path, skip.reason))
                skipped.append(skip)
                if processed.kind == "analysis":
                    same_error[re.sub(r"\d+", "#", processed.error)] += 1
                    if same_error.most_common(1)[0][1] >= SAME_ERROR_STOPS:
                        raise MoairError(
                            f"the same error on {SAME_ERROR_STOPS} different files, so it is not about the files: "
                            f"{processed.error}; run `moair doctor` to check the models"
                        )
            else:
                # Known content: indexed before, or analysed earlier in this run (a duplicate file
                # that a worker analysed in parallel with its twin is linked, its analysis dropped).
                if processed.digest in known_hashes:
                    report.linked += 1
                else:
                    known_hashes.add(processed.digest)
                    new_items.append(processed.item)
                entries.append(FileEntry(work.path, work.size, work.mtime_ns, processed.digest))
            done += 1
            if len(new_items) >= BATCH_SIZE or len(entries) + len(skipped) >= 256:
                flush()
            if progress:
                progress(done, len(todo))
        flush()
        if removed or bad_removed:
            store.commit(Batch(removed_paths=[*removed, *bad_removed]))
            report.removed = len(removed)
        report.maintenance = store.maintain()
    except KeyboardInterrupt:
        report.interrupted = True
        for future in queue:
            future.cancel()
        flush()  # keep what was analysed before the interrupt
    except NOT_ABOUT_THE_FILE as e:
        for future in queue:
            future.cancel()
        flush()  # keep what was committed or analysed before the error; the failed files are tried again
        kept = report.added + report.updated
        detail = str(e) if isinstance(e, MoairError) else f"{type(e).__name__}: {e}".removesuffix(": ")
        raise MoairError(
            f"indexing stopped: {detail}. The {kept} item(s) analysed before it are saved and no file was marked bad; "
            "run the same command again once this is fixed"
        ) from e
    finally:
        store.save()
