"""The index directory: a SQLite store (the source of truth) and a FAISS index (a persisted cache).

Layout of ``INDEX_DIR``::

    moair.sqlite    items (one per distinct content: perception, verbalizations, vector),
                    files (path -> item, size, mtime), skipped (bad files and why), meta
    vectors.faiss   IDMap2 inner-product index over item ids
    lock            held by the one process allowed to write

Crash safety. Every change is one SQLite transaction that also stores the item vectors, so a
kill -9 leaves SQLite at the last committed batch. The FAISS file is written to a temporary file
and renamed over the old one (atomic on POSIX). On open, the FAISS ids are compared with SQLite's
and any difference (a batch committed after the last FAISS save, or a crash between the two) is
repaired from the vectors in SQLite, so vectors and metadata never disagree.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import faiss
import numpy as np
from pydantic import BaseModel

from indexer.errors import MoairError
from indexer.mixture import Layout
from indexer.records import ItemRecord, Perception, Verbalization

SCHEMA_VERSION = 1
DB_NAME = "moair.sqlite"
FAISS_NAME = "vectors.faiss"
LOCK_NAME = "lock"
BUILDING_SUFFIX = ".building"
INDEX_FACTORY = "IDMap2,Flat"  # exact inner-product search over item ids

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a stale FAISS id cannot alias a new item
    content_hash TEXT NOT NULL UNIQUE,
    perception TEXT NOT NULL,
    verbalization TEXT NOT NULL,
    expert_versions TEXT NOT NULL,
    vector BLOB NOT NULL,
    added_at REAL NOT NULL,
    modality TEXT NOT NULL DEFAULT 'image'  -- image, text or image,text
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id),
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_item ON files(item_id);
CREATE TABLE IF NOT EXISTS skipped (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL
);
"""


class IndexConfig(BaseModel):
    """What an index was built with; a query must be encoded the same way."""

    schema_version: int = SCHEMA_VERSION
    text_embedder: str
    backbone: str
    experts: dict[str, str]  # name -> version
    layout: Layout
    created_at: float


class IndexStats(BaseModel):
    """What an index holds and how it searches."""

    path: str
    items: int
    paths: int  # files and entry keys pointing at items
    items_by_modality: dict[str, int]
    skipped: int  # bad files and entries remembered
    index_type: str  # a faiss index_factory string
    dim: int
    exact: bool  # exhaustive search: every query sees every item
    recall_estimate: float  # expected Recall@k against exact search
    vector_bytes: int  # FAISS's vectors in memory
    faiss_file_bytes: int
    database_bytes: int
    text_embedder: str
    backbone: str
    experts: dict[str, str]


@dataclass
class NewItem:
    """An analysed image on its way into the store (new content, or known content re-analysed)."""

    content_hash: str
    perception: Perception
    verbalization: Verbalization
    vector: np.ndarray
    versions: dict[str, str]  # what produced it: expert and encoder versions
    modality: str = "image"


@dataclass
class FileEntry:
    path: str
    size: int
    mtime_ns: int
    content_hash: str


@dataclass
class FileState:
    size: int
    mtime_ns: int


def is_index_dir(path: Path) -> bool:
    return (path / DB_NAME).is_file()


class Store:
    """One open index directory. Writers hold an exclusive lock; readers do not need one."""

    def __init__(self, path: Path, db: sqlite3.Connection, config: IndexConfig, writable: bool) -> None:
        self.path = path
        self.config = config
        self.writable = writable
        self._db = db
        self._lock_file = None
        self._dirty = False
        self._search_index = None
        # An index made before items could be texts has no modality column (all its items are
        # images); a writer adds the column on open, a reader reads the constant.
        has_modality = "modality" in {c[1] for c in db.execute("PRAGMA table_info(items)")}
        self._modality_column = "modality" if has_modality else "'image'"
        if writable:
            self._take_lock()
        self._index = self._load_faiss()

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, config: IndexConfig) -> "Store":
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise MoairError(f"{path} exists and is not a directory; choose another --index path")
        if path.is_dir() and not is_index_dir(path) and any(not _creation_leftover(p.name) for p in path.iterdir()):
            raise MoairError(f"{path} is a non-empty directory that is not a moair index; choose another --index path")
        path.mkdir(parents=True, exist_ok=True)
        if not is_index_dir(path):
            # Built under a temporary name and renamed into place, so a kill mid-creation never
            # leaves a database without its configuration (one that could not be opened).
            building = path / (DB_NAME + BUILDING_SUFFIX)
            for leftover in path.iterdir():
                if leftover.name != LOCK_NAME and _creation_leftover(leftover.name):
                    leftover.unlink()
            db = _connect(building)
            with db:
                db.executescript(SCHEMA)
                db.execute("INSERT INTO meta VALUES ('config', ?)", (config.model_dump_json(),))
            db.execute("PRAGMA journal_mode=DELETE")  # fold the WAL into the file before renaming it
            db.close()
            _durable_replace(building, path / DB_NAME)
        return cls.open(path, writable=True)

    @classmethod
    def open(cls, path: Path, writable: bool = False) -> "Store":
        path = Path(path)
        if not path.exists():
            raise MoairError(f"no index at {path}; build one with: moair index FOLDER --index {path}")
        if not is_index_dir(path):
            raise MoairError(f"{path} is not a moair index (no {DB_NAME} inside)")
        try:
            db = _connect(path / DB_NAME)
            row = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        except sqlite3.DatabaseError as e:
            raise MoairError(f"{path / DB_NAME} is not a readable moair database ({e})") from None
        if row is None:
            raise MoairError(f"{path} is not a moair index (its database has no configuration)")
        config = IndexConfig.model_validate_json(row[0])
        if config.schema_version != SCHEMA_VERSION:
            raise MoairError(f"{path} uses index format {config.schema_version}; this moair reads format {SCHEMA_VERSION}")
        if writable and "modality" not in {c[1] for c in db.execute("PRAGMA table_info(items)")}:
            with db:  # indexes made before items could be texts hold images only
                db.execute("ALTER TABLE items ADD COLUMN modality TEXT NOT NULL DEFAULT 'image'")
        return cls(path, db, config, writable)

    def _take_lock(self) -> None:
        self._lock_file = open(self.path / LOCK_NAME, "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise MoairError(f"another moair process is writing to {self.path}; wait for it to finish") from None

    def close(self) -> None:
        if self.writable and self._dirty:
            self.save()
        self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- FAISS cache -----------------------------------------------------------------------------
    def _empty_index(self) -> faiss.Index:
        return faiss.index_factory(self.config.layout.dim, INDEX_FACTORY, faiss.METRIC_INNER_PRODUCT)

    def _load_faiss(self) -> faiss.Index:
        index = None
        faiss_path = self.path / FAISS_NAME
        if faiss_path.exists():
            try:
                index = faiss.read_index(str(faiss_path))
                if not (
                    isinstance(index, faiss.IndexIDMap2)
                    and index.d == self.config.layout.dim
                    and index.metric_type == faiss.METRIC_INNER_PRODUCT
                ):
                    index = None  # a valid FAISS file, but not this index's kind: rebuilt below
            except RuntimeError:
                index = None  # unreadable cache: rebuilt from SQLite below
        if index is None:
            index = self._empty_index()
        self._repair(index)
        return index

    def _repair(self, index: faiss.Index) -> None:
        """Make the FAISS ids equal SQLite's item ids, adding or removing vectors as needed."""
        in_faiss = set(faiss.vector_to_array(index.id_map).tolist()) if index.ntotal else set()
        in_db = {row[0] for row in self._db.execute("SELECT id FROM items")}
        extra = in_faiss - in_db
        missing = sorted(in_db - in_faiss)
        if extra:
            index.remove_ids(np.array(sorted(extra), dtype=np.int64))
        for start in range(0, len(missing), 4096):
            ids = missing[start : start + 4096]
            index.add_with_ids(self.vectors(ids), np.array(ids, dtype=np.int64))
        if extra or missing:
            self._dirty = True

    def save(self) -> None:
        """Write the FAISS index atomically (temporary file, fsync, rename)."""
        target = self.path / FAISS_NAME
        tmp = target.with_suffix(".faiss.tmp")
        faiss.write_index(self._index, str(tmp))
        _durable_replace(tmp, target)
        self._dirty = False

    # -- reading ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index.ntotal)

    def file_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    def files_under(self, root: Path) -> dict[str, FileState]:
        """Indexed files at or below ``root`` (an absolute path)."""
        prefix = str(root).rstrip("/") + "/"
        rows = self._db.execute(
            "SELECT path, size, mtime_ns FROM files WHERE path = ? OR substr(path, 1, ?) = ?",
            (str(root), len(prefix), prefix),
        )
        return {path: FileState(size, mtime) for path, size, mtime in rows}

    def file_state(self, path: str) -> FileState | None:
        row = self._db.execute("SELECT size, mtime_ns FROM files WHERE path = ?", (path,)).fetchone()
        return FileState(*row) if row else None

    def content_hashes(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT content_hash FROM items")}

    def skipped_state(self, path: str) -> tuple[FileState, str] | None:
        row = self._db.execute("SELECT size, mtime_ns, reason FROM skipped WHERE path = ?", (path,)).fetchone()
        return (FileState(row[0], row[1]), row[2]) if row else None

    def stale_items(self, versions: dict[str, str]) -> dict[str, str]:
        """Items analysed by other expert or encoder versions than ``versions``: content hash ->
        one of the item's file paths (the one to re-analyse)."""
        rows = self._db.execute(
            "SELECT i.content_hash, MIN(f.path) FROM items i JOIN files f ON f.item_id = i.id"
            " WHERE i.expert_versions != ? GROUP BY i.id",
            (_versions_json(versions),),
        )
        return dict(rows)

    def item_id_for_hash(self, content_hash: str) -> int | None:
        row = self._db.execute("SELECT id FROM items WHERE content_hash = ?", (content_hash,)).fetchone()
        return row[0] if row else None

    def item_id_for_path(self, path: str) -> int | None:
        row = self._db.execute("SELECT item_id FROM files WHERE path = ?", (path,)).fetchone()
        return row[0] if row else None

    def ids_with_modality(self, modality: str) -> np.ndarray:
        """Ids of the items holding ``modality`` (image, text or image,text)."""
        rows = self._db.execute(f"SELECT id FROM items WHERE {self._modality_column} = ?", (modality,))
        return np.array([row[0] for row in rows], dtype=np.int64)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        dim = self.config.layout.dim
        if not ids:
            return np.zeros((0, dim), np.float32)
        marks = ",".join("?" * len(ids))
        found = dict(self._db.execute(f"SELECT id, vector FROM items WHERE id IN ({marks})", list(ids)))
        return np.stack([np.frombuffer(found[i], dtype=np.float32, count=dim) for i in ids])

    def items(self, ids: Sequence[int]) -> list[ItemRecord]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = {
            row[0]: row
            for row in self._db.execute(
                f"SELECT id, content_hash, perception, verbalization, expert_versions, {self._modality_column}"
                f" FROM items WHERE id IN ({marks})",
                list(ids),
            )
        }
        paths: dict[int, list[str]] = {}
        for item_id, path in self._db.execute(
            f"SELECT item_id, path FROM files WHERE item_id IN ({marks}) ORDER BY path", list(ids)
        ):
            paths.setdefault(item_id, []).append(path)
        return [
            ItemRecord(
                item_id=i,
                paths=paths.get(i, []),
                content_hash=rows[i][1],
                perception=Perception.model_validate_json(rows[i][2]),
                verbalization=Verbalization.model_validate_json(rows[i][3]),
                expert_versions=json.loads(rows[i][4]),
                modality=rows[i][5],
            )
            for i in ids
            if i in rows
        ]

    def search(self, queries: np.ndarray, k: int, modality: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, item ids) per query row; ids are -1 past the end of a small index. With
        ``modality``, only items of that modality are searched (a FAISS id selector)."""
        k = max(1, min(k, len(self))) if len(self) else 1
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if modality is not None:
            allowed = self.ids_with_modality(modality)
            selector = faiss.IDSelectorBatch(len(allowed), faiss.swig_ptr(allowed))
            return self._index.search(queries, k, params=faiss.SearchParameters(sel=selector))
        if self._search_index is None:
            self._search_index = _on_gpu_if_available(self._index)
        return self._search_index.search(queries, k)

    def stats(self) -> IndexStats:
        by_modality = dict(self._db.execute(f"SELECT {self._modality_column}, COUNT(*) FROM items GROUP BY 1"))
        files = {name: (self.path / name).stat().st_size if (self.path / name).exists() else 0 for name in (FAISS_NAME, DB_NAME)}
        return IndexStats(
            path=str(self.path),
            items=len(self),
            paths=self.file_count(),
            items_by_modality=by_modality,
            skipped=self._db.execute("SELECT COUNT(*) FROM skipped").fetchone()[0],
            index_type=INDEX_FACTORY,
            dim=self.config.layout.dim,
            exact=True,
            recall_estimate=1.0,
            vector_bytes=len(self) * self.config.layout.dim * 4,
            faiss_file_bytes=files[FAISS_NAME],
            database_bytes=files[DB_NAME],
            text_embedder=self.config.text_embedder,
            backbone=self.config.backbone,
            experts=self.config.experts,
        )

    # -- writing ---------------------------------------------------------------------------------
    def commit(
        self,
        new_items: Sequence[NewItem] = (),
        files: Sequence[FileEntry] = (),
        removed_paths: Iterable[str] = (),
        skipped: Sequence[tuple[str, int, int, str]] = (),
    ) -> None:
        """Apply one batch of changes in a single transaction, then mirror it in FAISS. An item
        whose content is already stored replaces the stored analysis and keeps its id."""
        if not self.writable:
            raise MoairError("this index was opened read-only")
        now = time.time()
        with self._db:
            added_ids, replaced_ids = [], []
            for item in new_items:
                values = (
                    item.perception.model_dump_json(),
                    item.verbalization.model_dump_json(),
                    _versions_json(item.versions),
                    np.ascontiguousarray(item.vector, dtype=np.float32).tobytes(),
                    now,
                    item.modality,
                )
                item_id = self.item_id_for_hash(item.content_hash)
                if item_id is None:
                    cursor = self._db.execute(
                        "INSERT INTO items (perception, verbalization, expert_versions, vector, added_at, modality,"
                        " content_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (*values, item.content_hash),
                    )
                    item_id = cursor.lastrowid
                else:
                    self._db.execute(
                        "UPDATE items SET perception = ?, verbalization = ?, expert_versions = ?, vector = ?,"
                        " added_at = ?, modality = ? WHERE id = ?",
                        (*values, item_id),
                    )
                    replaced_ids.append(item_id)
                added_ids.append(item_id)
            for entry in files:
                item_id = self.item_id_for_hash(entry.content_hash)
                self._db.execute(
                    "INSERT OR REPLACE INTO files (path, item_id, size, mtime_ns) VALUES (?, ?, ?, ?)",
                    (entry.path, item_id, entry.size, entry.mtime_ns),
                )
                self._db.execute("DELETE FROM skipped WHERE path = ?", (entry.path,))
            for path in removed_paths:
                self._db.execute("DELETE FROM files WHERE path = ?", (path,))
                self._db.execute("DELETE FROM skipped WHERE path = ?", (path,))
            self._db.executemany("INSERT OR REPLACE INTO skipped (path, size, mtime_ns, reason) VALUES (?, ?, ?, ?)", skipped)
            orphans = [row[0] for row in self._db.execute("SELECT id FROM items WHERE id NOT IN (SELECT item_id FROM files)")]
            if orphans:
                self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in orphans])
        if replaced_ids:
            self._index.remove_ids(np.array(replaced_ids, dtype=np.int64))
        if added_ids:
            self._index.add_with_ids(np.stack([i.vector for i in new_items]).astype(np.float32), np.array(added_ids, np.int64))
        if orphans:
            self._index.remove_ids(np.array(orphans, dtype=np.int64))
        if added_ids or orphans:
            self._dirty = True
            self._search_index = None


def _creation_leftover(name: str) -> bool:
    """A file that an index creation killed part-way may leave (the database being built, its WAL)."""
    return name == LOCK_NAME or name.startswith(DB_NAME + BUILDING_SUFFIX)


def _versions_json(versions: dict[str, str]) -> str:
    return json.dumps(versions, sort_keys=True)


def _durable_replace(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target`` atomically, with both the file and the rename on disk."""
    with open(source, "rb") as f:
        os.fsync(f.fileno())
    os.replace(source, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


_gpu_resources = None  # kept for the life of the process: GPU indexes point into it


def _on_gpu_if_available(index: faiss.Index) -> faiss.Index:
    """A GPU copy of the index for searching when this faiss build sees a GPU, else the index itself."""
    global _gpu_resources
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0 or index.ntotal == 0:
        return index
    if _gpu_resources is None:
        _gpu_resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(_gpu_resources, 0, index)
