"""The index directory: a SQLite store (the source of truth) and FAISS shard files (a persisted cache).

Layout of ``INDEX_DIR``::

    moair.sqlite    items (one per distinct content: perception, verbalizations, vector and its
                    vector id), files (path -> item, size, mtime), skipped (files not indexed, why,
                    and whether for their bytes or for a failure to read or analyse them),
                    meta (configuration; the vector manifest)
    vectors/        FAISS shard files and the trained template (see ``indexer.shards``)
    lock            held by the one process allowed to write

Vector ids. FAISS holds each item's vector under a *vector id* (``items.vector_id``) drawn from a
counter that never goes back. Re-analysing an item gives it a new vector id and leaves the old
vector behind as a tombstone; deleting an item does the same. Tombstones are skipped at search
and removed by compaction (``moair optimize``, or automatically when they pass a quarter).

Crash safety. Every change is one SQLite transaction that also stores the vectors, so a kill -9
leaves SQLite at the last committed batch. FAISS files are written under new names and fsynced
before the manifest row that names them is committed. On open, the ids in FAISS are compared
with SQLite's live vector ids: ids FAISS lacks are added from SQLite, ids SQLite no longer has
become tombstones, and a damaged or missing file is rebuilt, so vectors and metadata never
disagree. A database SQLite itself finds damaged is refused with a message.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Literal, Sequence

import faiss
import numpy as np
from pydantic import BaseModel, ValidationError

from indexer import ann
from indexer.errors import DamagedIndex, MoairError, damaged_database, disk_full
from indexer.head import ProjectionHead
from indexer.mixture import EMBEDDING_SPACES, Layout
from indexer.records import FilePath, ItemRecord, Perception, Verbalization
from indexer.shards import FOLDER as VECTORS_FOLDER
from indexer.shards import SHARD_BYTES, Shards, VectorManifest, durable_replace

SCHEMA_VERSION = 1
DB_NAME = "moair.sqlite"
HEADS_FOLDER = "heads"  # projection heads (moair train-head), named <space>-<fingerprint>.npz
CHANCE_SAMPLE = 2000  # stored vectors sampled to measure how a head moves the chance-level cosine
LEGACY_FAISS_NAME = "vectors.faiss"  # the single FAISS file of indexes made before shards
LOCK_NAME = "lock"
BUILDING_SUFFIX = ".building"
TOMBSTONE_SHARE_TO_COMPACT = 0.25  # compact automatically once this share of FAISS's vectors are dead
GROWTH_TO_RETUNE = 2.0  # tune the search knob again once the collection has grown this much
GROWTH_TO_RETRAIN = 16.0  # ... and choose, train and build the index again after this much (auto type)
FLAT_OVERSHOOT = 4  # an auto index being filled leaves Flat mid-run once it is this far past exact's limit
TUNING_QUERIES = 200
READ_CHUNK = 4096  # vectors read from SQLite at a time

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
    content_hash TEXT NOT NULL UNIQUE,
    perception TEXT NOT NULL,
    verbalization TEXT NOT NULL,
    expert_versions TEXT NOT NULL,
    vector BLOB NOT NULL,
    added_at REAL NOT NULL,
    modality TEXT NOT NULL DEFAULT 'image',  -- image, text or image,text
    -- the vector's id in FAISS: new for every new vector, never reused
    vector_id INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS items_by_vector ON items(vector_id);
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
    reason TEXT NOT NULL,
    -- content: the bytes are bad (remembered until the file changes); access, analysis: the file
    -- could not be read or analysed (an environment fault: tried again on the next run)
    kind TEXT NOT NULL DEFAULT 'content'
);
"""
SkipKind = Literal["content", "access", "analysis"]
RETRIED_KINDS = ("access", "analysis")
# How indexes made before skip kinds tell them apart: by the reason's wording.
LEGACY_SKIP_KIND = "CASE WHEN reason LIKE 'analysis failed:%' THEN 'analysis' ELSE 'content' END"


class HeadRecord(BaseModel):
    """A projection head an index searches through (one per embedding space)."""

    file: str  # in the index's heads/ folder
    version: str
    # how much the head moved the typical cosine between unrelated items (item_shift) and between
    # unrelated queries and items (query_shift), measured on the collection
    item_shift: float = 0.0
    query_shift: float = 0.0


class IndexConfig(BaseModel):
    """What an index was built with; a query must be encoded the same way."""

    schema_version: int = SCHEMA_VERSION
    text_embedder: str
    backbone: str
    backbone_options: dict[str, str] = {}  # how to build it again: a checkpoint folder
    backbone_version: str = ""  # a checkpoint backbone's version (its files' fingerprint); queries must match
    experts: dict[str, str]  # name -> version
    expert_options: dict[str, dict[str, str]] = {}  # checkpoint experts: name -> how to build it again
    layout: Layout
    created_at: float
    heads: dict[str, HeadRecord] = {}  # embedding space ("language", "visual") -> its projection head


class VerifyReport(BaseModel):
    """What ``moair verify`` found."""

    path: FilePath
    problems: list[str]  # wrong now: the index needs restoring from a backup, or building again
    repaired: list[str]  # vector files found damaged or missing at open, rebuilt from the database
    saved: bool  # whether the repair was written (a writer's open), or made in memory only

    @property
    def ok(self) -> bool:
        return not self.problems


class IndexStats(BaseModel):
    """What an index holds and how it searches."""

    path: FilePath
    items: int
    paths: int  # files and entry keys pointing at items
    items_by_modality: dict[str, int]
    skipped: int  # files and entries not indexed: bad_files + failed
    bad_files: int  # whose bytes are bad (corrupt, truncated, not an image, too large): remembered until they change
    failed: int  # that could not be read or analysed in the last run: tried again on the next one
    index_type: str  # a faiss index_factory string
    requested_index_type: str  # auto, or what was asked for
    dim: int
    exact: bool  # exhaustive search: every query sees every item
    search_knob: str  # e.g. "nprobe=32"; empty for exact search
    reranked: int  # candidates re-ranked with exact vectors per result (1: none, the codes are exact)
    recall_estimate: float  # measured recall@10 against exact search (1.0 when exact)
    recall_target: float
    tuned_items: int  # items in the index when the recall was measured
    shards: int
    tombstones: int  # dead vectors still in FAISS, skipped at search until compacted
    memory_mapped_shards: int
    index_bytes: int  # the FAISS index in memory (its shard files)
    flat_bytes: int  # what exact Flat search would take
    memory_budget: int | None
    faiss_file_bytes: int
    database_bytes: int
    text_embedder: str
    backbone: str
    experts: dict[str, str]
    heads: dict[str, str] = {}  # embedding space -> projection head version


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


@dataclass
class SkippedFile:
    """A file or entry that is not indexed, and why."""

    path: str
    size: int
    mtime_ns: int
    reason: str
    kind: SkipKind = "content"

    @property
    def retried(self) -> bool:
        """Whether the next run tries it again (it failed for a reason other than its bytes)."""
        return self.kind in RETRIED_KINDS


@dataclass
class IndexSettings:
    """How the vector index is chosen and searched; None keeps what the index has."""

    index_type: str | None = None  # auto or a faiss index_factory string
    memory_budget: int | None = None  # bytes
    recall_target: float | None = None
    shard_size: int | None = None  # vectors per shard file

    def apply(self, manifest: VectorManifest, items: int, dim: int) -> bool:
        """Write these settings into ``manifest`` (of an index of ``items`` vectors of ``dim``);
        True if anything changed. An index type that would not fit the memory budget (or this
        machine's memory) at today's size is refused before anything is built."""
        changed = False
        requested = ann.parse_index_type(self.index_type) if self.index_type is not None else manifest.requested
        if requested != ann.AUTO:
            budget = self.memory_budget or manifest.memory_budget or ann.physical_memory()
            needed = ann.estimated_bytes(requested, items, dim)
            if needed > budget:
                raise MoairError(
                    f"{requested} would take about {needed / 2**30:.1f} GiB for {items:,} items, more than "
                    f"{'the memory budget' if self.memory_budget or manifest.memory_budget else 'this machine has'} "
                    f"({budget / 2**30:.1f} GiB); choose a smaller one, or auto"
                )
        if requested != manifest.requested:
            manifest.requested, changed = requested, True
        if self.memory_budget is not None and self.memory_budget != manifest.memory_budget:
            if self.memory_budget <= 0:
                raise MoairError(f"the memory budget must be more than 0 bytes, got {self.memory_budget}")
            manifest.memory_budget, changed = self.memory_budget, True
        if self.recall_target is not None and self.recall_target != manifest.recall_target:
            if not 0 < self.recall_target <= 1:
                raise MoairError(f"the recall target must be above 0 and at most 1, got {self.recall_target}")
            manifest.recall_target, changed = self.recall_target, True
        if self.shard_size is not None and self.shard_size != manifest.shard_size:
            if self.shard_size < 1:
                raise MoairError(f"a shard must hold at least 1 vector, got {self.shard_size}")
            manifest.shard_size, changed = self.shard_size, True
        return changed


ProgressCallback = Callable[[int, int], None]


def is_index_dir(path: Path) -> bool:
    return (path / DB_NAME).is_file()


class Store:
    """One open index directory. Writers hold an exclusive lock; readers do not need one."""

    def __init__(self, path: Path, db: sqlite3.Connection, config: IndexConfig, writable: bool, lock: IO | None = None) -> None:
        self.path = path
        self.config = config
        self.writable = writable
        self._db = db
        self._lock_file = lock
        self._dirty = False
        self._gpu_search = None
        # An index made before items could be texts has no modality column (all its items are
        # images), one made before vector ids uses item ids; a writer adds the columns on open,
        # a reader reads the old ones.
        columns = {c[1] for c in db.execute("PRAGMA table_info(items)")}
        self._modality_column = "modality" if "modality" in columns else "'image'"
        self._vector_column = "vector_id" if "vector_id" in columns else "id"
        skip_columns = {c[1] for c in db.execute("PRAGMA table_info(skipped)")}
        self._skip_kind_column = "kind" if "kind" in skip_columns else LEGACY_SKIP_KIND
        if writable and self._lock_file is None:
            self._lock_file = _take_lock(path)
        try:
            self._heads = self._load_heads()
            self._shards = self._load_vectors()
        except sqlite3.DatabaseError as e:
            self.close_quietly()
            raise damaged_database(path / DB_NAME, e) from None
        except MoairError:
            self.close_quietly()
            raise

    def close_quietly(self) -> None:
        """Release the database and the lock without saving (the index could not be opened)."""
        self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, config: IndexConfig) -> "Store":
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise MoairError(f"{path} exists and is not a directory; choose another --index path")
        if path.is_dir() and not is_index_dir(path) and any(not _creation_leftover(p.name) for p in path.iterdir()):
            raise MoairError(f"{path} is a non-empty directory that is not a moair index; choose another --index path")
        path.mkdir(parents=True, exist_ok=True)
        lock = _take_lock(path)  # before anything is built: two creations of one index must not interleave
        try:
            if is_index_dir(path):
                raise MoairError(f"another moair process created an index at {path} meanwhile; run the command again to add to it")
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
                db.execute("INSERT INTO meta VALUES ('next_vector_id', '1')")
            db.execute("PRAGMA journal_mode=DELETE")  # fold the WAL into the file before renaming it
            db.close()
            durable_replace(building, path / DB_NAME)
            return cls.open(path, writable=True, lock=lock)
        except BaseException:
            lock.close()
            raise

    @classmethod
    def open(cls, path: Path, writable: bool = False, lock: IO | None = None) -> "Store":
        """Open the index at ``path``; ``writable`` takes its write lock (or uses ``lock``, one
        already taken)."""
        path = Path(path)
        if not path.exists():
            raise MoairError(f"no index at {path}; build one with: moair index FOLDER --index {path}")
        if not is_index_dir(path):
            raise MoairError(f"{path} is not a moair index (no {DB_NAME} inside)")
        if writable and not os.access(path, os.W_OK):
            raise MoairError(f"{path} cannot be written (a read-only folder or file system): search it, but index, remove or optimize where it is writable")
        try:
            db = _connect(path / DB_NAME) if writable else _connect_read_only(path / DB_NAME)
            row = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
            stored = db.execute("SELECT length(vector) FROM items LIMIT 1").fetchone()
        except sqlite3.DatabaseError as e:
            if disk_full(e):
                raise MoairError(f"the disk holding {path} is full: free space and try again") from None
            raise damaged_database(path / DB_NAME, e) from None
        if row is None:
            raise MoairError(f"{path} is not a moair index (its database has no configuration)")
        try:
            config = IndexConfig.model_validate_json(row[0])
        except ValidationError as e:
            db.close()
            raise DamagedIndex(f"{path / DB_NAME}: its configuration row is damaged ({e.errors()[0]['msg']}); restore it from a backup") from None
        if config.schema_version != SCHEMA_VERSION:
            raise MoairError(f"{path} uses index format {config.schema_version}; this moair reads format {SCHEMA_VERSION}")
        if stored and stored[0] != config.layout.dim * 4:
            db.close()
            raise DamagedIndex(
                f"{path / DB_NAME}: its configuration row does not match the stored vectors ({config.layout.dim} numbers "
                f"each by the configuration, {stored[0] // 4} stored); restore it from a backup"
            )
        if writable:
            try:
                _upgrade_schema(db)
            except sqlite3.DatabaseError as e:
                db.close()
                raise damaged_database(path / DB_NAME, e) from None
        return cls(path, db, config, writable, lock)

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

    # -- projection heads ----------------------------------------------------------------------
    # SQLite keeps every item's vector as its encoders gave it; FAISS, re-ranking and "more like
    # this" see it through the heads, so a head can be trained again or removed without
    # embedding anything again.
    def _load_heads(self) -> dict[str, ProjectionHead]:
        heads = {}
        for space, record in self.config.heads.items():
            head = ProjectionHead.load(self.path / HEADS_FOLDER / record.file)
            if head.version != record.version:
                raise MoairError(f"{self.path / HEADS_FOLDER / record.file} is not the head this index was built with; run moair train-head again")
            heads[space] = head
        return heads

    @property
    def layout(self) -> Layout:
        """The layout queries are composed with: the chance levels as the projection heads moved
        them. Queries of the language blocks are embedded as queries (query_shift); the visual block
        compares images with images (item_shift) and, cross-modal, texts with images (query_shift)."""
        shifts, text_shifts = {}, {}
        for space, record in self.config.heads.items():
            for block in EMBEDDING_SPACES[space]:
                shifts[block] = record.item_shift if space == "visual" else record.query_shift
                text_shifts[block] = record.query_shift
        return self.config.layout.shifted(shifts, text_shifts)

    def project(self, rows: np.ndarray) -> np.ndarray:
        """Stored item rows as searched: each present block through its space's projection head."""
        if not self._heads:
            return rows
        rows = np.array(rows, dtype=np.float32)
        slices = self.config.layout.slices()
        for space, head in self._heads.items():
            for block in EMBEDDING_SPACES[space]:
                where = slices[block]
                present = rows[:, where.stop - 1] > 0
                if present.any():
                    rows[present, where.start : where.stop - 1] = head.apply(rows[present, where.start : where.stop - 1])
        return rows

    def project_parts(self, parts: dict[str, np.ndarray | None]) -> dict[str, np.ndarray | None]:
        """A query's block embeddings through the projection heads."""
        heads = {block: self._heads[space] for space in self._heads for block in EMBEDDING_SPACES[space]}
        return {name: vector if vector is None or name not in heads else heads[name].apply(vector) for name, vector in parts.items()}

    def set_heads(
        self, heads: dict[str, ProjectionHead | None], probes: dict[str, np.ndarray] | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Search through these projection heads from now on (None removes a space's head).
        ``probes[space]`` are query embeddings of texts unrelated to the collection, which measure
        how a head moves the query-to-item chance level (without them the item-to-item shift is
        used). The head files are written first, the vector index is built again from the stored
        vectors, and the configuration naming the heads is committed together with the new vector
        index: a crash at any point leaves the old index or the new one, whole."""
        if not self.writable:
            raise MoairError("this index was opened read-only")
        folder = self.path / HEADS_FOLDER
        records, active = dict(self.config.heads), dict(self._heads)
        sample = self._chance_sample()
        for space, head in heads.items():
            if head is None:
                records.pop(space, None)
                active.pop(space, None)
                continue
            file = f"{space}-{head.fingerprint}.npz"
            head.save(folder / file)
            item_shift, query_shift = self._chance_shifts(sample, space, head, (probes or {}).get(space))
            records[space] = HeadRecord(file=file, version=head.version, item_shift=item_shift, query_shift=query_shift)
            active[space] = head
        before = self._heads
        self._heads = active
        try:
            self._shards = self._rebuild(self._shards.manifest, progress=progress)
            self._vectors_changed()
            self.save(config=self.config.model_copy(update={"heads": records}))
        except BaseException:
            self._heads = before
            raise
        kept = {record.file for record in records.values()}
        for path in folder.glob("*.npz") if folder.is_dir() else ():
            if path.name not in kept:
                path.unlink()

    def _chance_sample(self) -> np.ndarray:
        """Up to ``CHANCE_SAMPLE`` stored rows, as stored (before any head)."""
        live = self._live_vector_ids()
        if len(live) > CHANCE_SAMPLE:
            live = np.random.default_rng(0).choice(live, CHANCE_SAMPLE, replace=False)
        chunks = [rows for _, rows in self._vector_chunks(np.sort(live), projected=False)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.config.layout.dim), np.float32)

    def _chance_shifts(self, sample: np.ndarray, space: str, head: ProjectionHead, probes: np.ndarray | None) -> tuple[float, float]:
        """How much ``head`` moves the mean cosine between different items of the collection, and
        between the unrelated ``probes`` and the items (the chance levels the mixture subtracts),
        averaged over the space's blocks; 0 with too few items. Without probes both are the first."""
        item_shifts, query_shifts = [], []
        slices = self.config.layout.slices()
        for block in EMBEDDING_SPACES[space]:
            where = slices[block]
            vectors = sample[sample[:, where.stop - 1] > 0, where.start : where.stop - 1]
            if len(vectors) < 2:
                continue
            projected = head.apply(vectors)
            pairs = np.roll(np.arange(len(vectors)), 1)  # each item with another one
            item_shifts.append(np.mean(np.sum(projected * projected[pairs], axis=1)) - np.mean(np.sum(vectors * vectors[pairs], axis=1)))
            if probes is not None and len(probes):
                query_shifts.append(np.mean(head.apply(probes) @ projected.T) - np.mean(probes @ vectors.T))
        item_shift = round(float(np.mean(item_shifts)), 4) if item_shifts else 0.0
        return item_shift, round(float(np.mean(query_shifts)), 4) if query_shifts else item_shift

    # -- the FAISS cache -----------------------------------------------------------------------
    def _manifest(self) -> VectorManifest | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'vectors'").fetchone()
        return VectorManifest.model_validate_json(row[0]) if row else None

    def _load_vectors(self) -> Shards:
        """Load the shard files the manifest names, then make them agree with SQLite (the
        consistency check): missing vectors are added, vectors of items that are gone become
        tombstones, and files that are damaged, or an index without a manifest, are rebuilt."""
        folder = self.path / VECTORS_FOLDER
        for _ in range(3):
            manifest = self._manifest()
            if manifest is None:  # a new index, or one made before shards: built from SQLite
                shards = Shards(folder, self.config.layout.dim, VectorManifest())
                self._dirty = self.writable
                break
            shards = Shards.load(folder, self.config.layout.dim, manifest, self.writable)
            if not shards.problems or self._manifest() == manifest:
                break  # a reader can race a writer replacing the files: it reads the new manifest
        if self.writable and manifest is not None and manifest.trained_file and shards.template is None:
            # without the trained template no shard can be added to: train again from SQLite
            return self._rebuild(manifest, note=f"trained index lost ({'; '.join(shards.problems)})")
        self._reconcile(shards)
        if shards.problems:
            self._dirty = True
        if self.writable:
            shards.delete_unlisted()  # files a killed save wrote but never listed
        return shards

    def _reconcile(self, shards: Shards) -> None:
        in_faiss = shards.ids()
        live = self._live_vector_ids()
        shards.tombstones = set(np.setdiff1d(in_faiss, live, assume_unique=False).tolist())
        missing = np.setdiff1d(live, in_faiss)
        if len(missing):
            for ids, vectors in self._vector_chunks(missing):
                shards.add(ids, vectors)
            self._dirty = True

    def _live_vector_ids(self) -> np.ndarray:
        rows = self._db.execute(f"SELECT {self._vector_column} FROM items").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def _vector_chunks(self, vector_ids: np.ndarray | None = None, projected: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(vector ids, vectors) from SQLite in chunks: those given, or every live one; as searched
        (through the projection heads) unless ``projected`` is False."""
        dim = self.config.layout.dim
        if vector_ids is None:
            vector_ids = np.sort(self._live_vector_ids())
        for start in range(0, len(vector_ids), READ_CHUNK):
            ids = [int(i) for i in vector_ids[start : start + READ_CHUNK]]
            marks = ",".join("?" * len(ids))
            found = dict(self._db.execute(f"SELECT {self._vector_column}, vector FROM items WHERE {self._vector_column} IN ({marks})", ids))
            ids = [i for i in ids if i in found]
            if ids:
                rows = np.stack([np.frombuffer(found[i], np.float32, count=dim) for i in ids])
                yield np.array(ids, np.int64), self.project(rows) if projected else rows

    def _rebuild(self, manifest: VectorManifest, note: str = "", progress: ProgressCallback | None = None) -> Shards:
        """Build the vector index again from SQLite: choose its type, train it on a sample, add
        every live vector, tune its search knob to the recall target."""
        dim = self.config.layout.dim
        live = np.sort(self._live_vector_ids())
        manifest = manifest.model_copy(update={"shards": [], "trained_file": None, "trained_sha256": None, "knob": None, "knob_value": None})
        manifest.index_type = self._wanted_type(manifest, len(live))
        empty = ann.build_index(manifest.index_type, dim)
        if len(live) < ann.minimum_training(empty):
            note = f"{manifest.index_type} needs {ann.minimum_training(empty)} items to train on; searching exactly until then"
            manifest.index_type = ann.EXACT
            empty = ann.build_index(ann.EXACT, dim)
        template = None
        sample_size = ann.training_size(empty, len(live), dim)
        if sample_size:
            sample = np.random.default_rng(0).choice(live, sample_size, replace=False)
            ann.train(empty, np.concatenate([v for _, v in self._vector_chunks(np.sort(sample))]))
            template = empty
        shards = Shards(self.path / VECTORS_FOLDER, dim, manifest, template)
        done = 0
        for ids, vectors in self._vector_chunks(live):
            shards.add(ids, vectors)
            done += len(ids)
            if progress:
                progress(done, len(live))
        self._tune(shards)
        self._dirty = True
        if note:
            shards.problems.append(note)
        return shards

    def _tune(self, shards: Shards) -> None:
        """Measure recall@10 against exact search on queries made from a sample of items, and set
        the search knob (nprobe / efSearch) to the smallest value reaching the recall target."""
        manifest = shards.manifest
        live = self._live_vector_ids()
        manifest.tuned_items = len(live)
        if ann.knob(shards.new_shard_index()) is None or len(live) <= ann.TUNING_K:
            manifest.knob, manifest.knob_value, manifest.recall_estimate = None, None, 1.0
            return
        rng = np.random.default_rng(1)
        sources = np.sort(rng.choice(live, min(TUNING_QUERIES, len(live)), replace=False))
        source_ids, source_vectors = zip(*self._vector_chunks(sources))
        source_ids = np.concatenate(source_ids)
        queries = self.layout.sample_queries(np.concatenate(source_vectors))
        k = ann.TUNING_K

        def without_source(found: np.ndarray) -> np.ndarray:
            # the item a query was made from is trivially found: leave it out of both rankings
            return np.array([[i for i in row if i != source][:k] for row, source in zip(found.tolist(), source_ids)])

        truth = without_source(ann.exact_top_k(queries, self._vector_chunks, k + 1))
        tuning = ann.tune(
            shards.shards[0].index,
            lambda q, _k, value: without_source(self._search_vectors(shards, q, k + 1, knob_value=value)[1]),
            queries,
            truth,
            manifest.recall_target,
        )
        manifest.knob, manifest.knob_value, manifest.recall_estimate = tuning.knob, tuning.value, round(tuning.recall, 4)

    def save(self, config: IndexConfig | None = None) -> None:
        """Write changed FAISS shards under new names, then commit the manifest naming them (and a
        new ``config`` with it, when given), then delete the files it no longer names (each step
        leaves a complete index behind)."""
        manifest = self._shards.save()
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('vectors', ?)", (manifest.model_dump_json(),))
            if config is not None:
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'config'", (config.model_dump_json(),))
                self.config = config
        self._shards.delete_unlisted()
        (self.path / LEGACY_FAISS_NAME).unlink(missing_ok=True)
        self._dirty = False

    def forget_unsaved_vectors(self) -> None:
        """Close without writing the FAISS files (a full disk): they are a cache of SQLite, checked
        against it and rebuilt at the next open."""
        self._dirty = False

    def _vectors_changed(self) -> None:
        """The vector index changed: save it at close, and search a fresh GPU copy."""
        self._dirty = True
        self._gpu_search = None

    def configure(self, settings: IndexSettings) -> None:
        """Change how the vector index is chosen and tuned; takes effect at ``maintain`` or
        ``optimize``."""
        if settings.apply(self._shards.manifest, len(self), self.config.layout.dim):
            self._dirty = True

    def maintain(self, progress: ProgressCallback | None = None) -> str | None:
        """Keep the vector index fit as the collection changes: build another type when the
        requested one differs or (auto) the collection outgrew the one built; compact when a
        quarter of the vectors are tombstones; tune again after the collection doubled. Returns
        what was done, or None."""
        manifest = self._shards.manifest
        live = len(self)  # tombstones are not counted
        wanted = self._wanted_type(manifest, live)
        if wanted != manifest.index_type:
            needed = ann.minimum_training(ann.build_index(wanted, self.config.layout.dim))
            if live < needed:
                return f"{wanted} needs {needed} items to train on; searching exactly until then"
        if wanted != manifest.index_type and (manifest.requested != ann.AUTO or _outgrown(manifest, live, wanted)):
            before = manifest.index_type
            self._shards = self._rebuild(manifest, progress=progress)
            self._vectors_changed()
            return f"vector index rebuilt as {self._shards.manifest.index_type} (was {before})"
        if self._shards.tombstones and len(self._shards.tombstones) >= TOMBSTONE_SHARE_TO_COMPACT * self._shards.ntotal:
            removed = self._shards.compact()
            self._vectors_changed()
            return f"compacted: {removed} dead vectors removed"
        if manifest.knob and live >= GROWTH_TO_RETUNE * max(manifest.tuned_items, 1):
            self._tune(self._shards)
            self._vectors_changed()
            return f"search tuned: {manifest.knob}={manifest.knob_value}, recall@10 {manifest.recall_estimate:.3f}"
        return None

    def _wanted_type(self, manifest: VectorManifest, live: int) -> str:
        if manifest.requested != ann.AUTO:
            return manifest.requested
        dim = self.config.layout.dim
        # the shard count depends on the codes chosen: assume a byte a dimension (SQ8)
        shard_count = -(-live // manifest.shard_size) if manifest.shard_size else 1 + live * dim // SHARD_BYTES
        return ann.choose_index_type(live, dim, manifest.memory_budget, max(1, shard_count))

    def optimize(self, progress: ProgressCallback | None = None) -> str:
        """Rebuild the vector index from SQLite: tombstones dropped, the type chosen again (auto)
        or as requested, trained on a fresh sample, and the search knob tuned."""
        before = self._shards.manifest.index_type
        self._shards = self._rebuild(self._shards.manifest, progress=progress)
        self._vectors_changed()
        self.save()
        after = self._shards.manifest
        line = f"{after.index_type} (was {before}), {len(self._shards.shards)} shard(s)"
        if after.knob:
            line += f"; {after.knob}={after.knob_value} reaches recall@10 {after.recall_estimate:.3f} (target {after.recall_target})"
        return line

    def verify(self) -> list[str]:
        """What is wrong with the index now (empty when nothing): SQLite's integrity check, every
        item's vector and descriptions well formed, the vector files' checksums, and every live
        vector in FAISS exactly once, every other FAISS vector a tombstone."""
        problems = []
        try:
            for (line,) in self._db.execute("PRAGMA integrity_check(20)"):
                problems += [f"SQLite: {part}" for part in line.splitlines() if part != "ok"]
        except sqlite3.DatabaseError as e:
            problems.append(f"SQLite: {e}")
        if problems:
            return problems  # the checks below read the damaged tables
        bad_rows = self._db.execute(
            "SELECT COUNT(*) FROM items WHERE length(vector) != ? OR NOT json_valid(perception) OR NOT json_valid(verbalization)",
            (self.config.layout.dim * 4,),
        ).fetchone()[0]
        if bad_rows:
            problems.append(f"{bad_rows} item(s) with a vector of the wrong length or descriptions that are not JSON")
        problems += self._shards.unchecked_file_problems()
        in_faiss = self._shards.ids()
        if len(np.unique(in_faiss)) != len(in_faiss):
            problems.append("a vector id is in FAISS twice")
        searchable = np.setdiff1d(in_faiss, np.fromiter(self._shards.tombstones, np.int64))
        live = np.sort(self._live_vector_ids())
        if not np.array_equal(searchable, live):
            problems.append(f"FAISS searches {len(searchable)} vectors, SQLite has {len(live)} live ones")
        return problems

    @property
    def repaired_at_open(self) -> list[str]:
        """What was wrong with the vector files when the index was opened (rebuilt from SQLite:
        in memory for a reader, saved by a writer)."""
        return list(self._shards.problems)

    def tombstones_count(self) -> int:
        """Dead vectors still in FAISS (skipped at search until compaction)."""
        return len(self._shards.tombstones)

    # -- reading ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Live items in the vector index."""
        return int(self._shards.ntotal) - len(self._shards.tombstones)

    def file_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    def files_under(self, root: Path) -> dict[str, FileState]:
        """Indexed files at or below ``root`` (an absolute path)."""
        rows = self._db.execute(
            f"SELECT path, size, mtime_ns FROM files WHERE {_AT_OR_BELOW}", _at_or_below(root)
        )
        return {path: FileState(size, mtime) for path, size, mtime in rows}

    def skipped_under(self, root: Path) -> list[str]:
        """Paths at or below ``root`` remembered as bad files."""
        return [row[0] for row in self._db.execute(f"SELECT path FROM skipped WHERE {_AT_OR_BELOW}", _at_or_below(root))]

    def file_state(self, path: str) -> FileState | None:
        row = self._db.execute(f"SELECT size, mtime_ns FROM files WHERE path = {PATH}", (path_bytes(path),)).fetchone()
        return FileState(*row) if row else None

    def content_hashes(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT content_hash FROM items")}

    def skipped_state(self, path: str) -> SkippedFile | None:
        row = self._db.execute(
            f"SELECT path, size, mtime_ns, reason, {self._skip_kind_column} FROM skipped WHERE path = {PATH}",
            (path_bytes(path),),
        ).fetchone()
        return SkippedFile(*row) if row else None

    def stale_items(self, versions: dict[str, str]) -> dict[str, str]:
        """Items analysed by other expert or encoder versions than ``versions``: content hash ->
        one of the item's file paths (the one to re-analyse)."""
        rows = self._db.execute(
            "SELECT i.content_hash, MIN(f.path) FROM items i JOIN files f ON f.item_id = i.id"
            " WHERE i.expert_versions != ? GROUP BY i.id",
            (_versions_json(versions),),
        )
        return dict(rows)

    def holds(self, modality: str) -> bool:
        """Whether any item holds exactly ``modality`` (image, text or image,text)."""
        row = self._db.execute(f"SELECT 1 FROM items WHERE {self._modality_column} = ? LIMIT 1", (modality,)).fetchone()
        return row is not None

    def item_id_for_hash(self, content_hash: str) -> int | None:
        row = self._db.execute("SELECT id FROM items WHERE content_hash = ?", (content_hash,)).fetchone()
        return row[0] if row else None

    def paths_of(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` (file paths or entry keys) that are indexed or remembered as bad."""
        found = []
        for key in keys:
            found_in = f"SELECT 1 FROM files WHERE path = {PATH} UNION ALL SELECT 1 FROM skipped WHERE path = {PATH}"
            if self._db.execute(found_in, (path_bytes(key),) * 2).fetchone():
                found.append(key)
        return found

    def item_id_for_path(self, path: str) -> int | None:
        row = self._db.execute(f"SELECT item_id FROM files WHERE path = {PATH}", (path_bytes(path),)).fetchone()
        return row[0] if row else None

    def vector_ids_with_modality(self, modality: str) -> np.ndarray:
        """Vector ids of the items holding ``modality`` (image, text or image,text)."""
        rows = self._db.execute(f"SELECT {self._vector_column} FROM items WHERE {self._modality_column} = ?", (modality,))
        return np.array([row[0] for row in rows], dtype=np.int64)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The vectors of items ``ids`` as searched (through the projection heads)."""
        dim = self.config.layout.dim
        if not ids:
            return np.zeros((0, dim), np.float32)
        marks = ",".join("?" * len(ids))
        found = dict(self._db.execute(f"SELECT id, vector FROM items WHERE id IN ({marks})", list(ids)))
        return self.project(np.stack([np.frombuffer(found[i], dtype=np.float32, count=dim) for i in ids]))

    def items(self, ids: Sequence[int]) -> list[ItemRecord]:
        """The stored records of those of ``ids`` that exist, in the order given."""
        ids = [i for i in ids if 0 <= i < 2**63]  # SQLite's ids are int64: others cannot exist
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
        allowed = self.vector_ids_with_modality(modality) if modality is not None else None
        scores, vector_ids = self._search_vectors(self._shards, queries, k, allowed, gpu=allowed is None)
        return scores, self._item_ids(vector_ids)

    def _search_vectors(
        self,
        shards: Shards,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        knob_value: int | None = None,
        gpu: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, vector ids); lossy codes find ``REFINE_FACTOR * k`` candidates that the
        exact vectors in SQLite re-rank."""
        wanted = k * ann.refine_factor(shards.manifest.index_type)
        on_gpu = self._gpu() if gpu else None
        if on_gpu is not None:
            scores, vector_ids = on_gpu(queries, wanted)
        else:
            scores, vector_ids = shards.search(queries, wanted, allowed=allowed, knob_value=knob_value)
        if wanted == k:
            return scores, vector_ids
        return ann.rerank(queries, vector_ids, self._vectors_by_vector_id, k)

    def _vectors_by_vector_id(self, vector_ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``vector_ids``, one row each (zeros for an id no longer live)."""
        rows = np.zeros((len(vector_ids), self.config.layout.dim), np.float32)
        where = {int(v): position for position, v in enumerate(vector_ids)}
        for ids, vectors in self._vector_chunks(np.asarray(vector_ids)):
            rows[[where[int(i)] for i in ids]] = vectors
        return rows

    def _item_ids(self, vector_ids: np.ndarray) -> np.ndarray:
        wanted = sorted({int(i) for i in vector_ids.ravel() if i >= 0})
        marks = ",".join("?" * len(wanted))
        known = dict(self._db.execute(f"SELECT {self._vector_column}, id FROM items WHERE {self._vector_column} IN ({marks})", wanted)) if wanted else {}
        return np.vectorize(lambda v: known.get(int(v), -1), otypes=[np.int64])(vector_ids) if vector_ids.size else vector_ids

    def _gpu(self) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None:
        if self._gpu_search is None:
            self._gpu_search = _gpu_searcher(self._shards) or False
        return self._gpu_search or None

    def stats(self) -> IndexStats:
        by_modality = dict(self._db.execute(f"SELECT {self._modality_column}, COUNT(*) FROM items GROUP BY 1"))
        manifest = self._shards.manifest
        folder = self.path / VECTORS_FOLDER
        on_disk = sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".faiss") if folder.is_dir() else 0
        return IndexStats(
            path=str(self.path),
            items=len(self),
            paths=self.file_count(),
            items_by_modality=by_modality,
            **self._skip_counts(),
            index_type=manifest.index_type,
            requested_index_type=manifest.requested,
            dim=self.config.layout.dim,
            exact=manifest.knob is None and manifest.index_type == ann.EXACT,
            search_knob=f"{manifest.knob}={manifest.knob_value}" if manifest.knob else "",
            reranked=ann.refine_factor(manifest.index_type),
            recall_estimate=manifest.recall_estimate,
            recall_target=manifest.recall_target,
            tuned_items=manifest.tuned_items,
            shards=len(self._shards.shards),
            tombstones=len(self._shards.tombstones),
            memory_mapped_shards=sum(s.mapped for s in self._shards.shards),
            index_bytes=self._shards.index_bytes(),
            flat_bytes=ann.flat_bytes(len(self), self.config.layout.dim),
            memory_budget=manifest.memory_budget,
            faiss_file_bytes=on_disk,
            database_bytes=(self.path / DB_NAME).stat().st_size,
            text_embedder=self.config.text_embedder,
            backbone=self.config.backbone,
            experts=self.config.experts,
            heads={space: record.version for space, record in self.config.heads.items()},
        )

    def _skip_counts(self) -> dict[str, int]:
        by_kind = dict(self._db.execute(f"SELECT {self._skip_kind_column}, COUNT(*) FROM skipped GROUP BY 1"))
        failed = sum(by_kind.get(kind, 0) for kind in RETRIED_KINDS)
        return {"skipped": sum(by_kind.values()), "bad_files": sum(by_kind.values()) - failed, "failed": failed}

    # -- writing ---------------------------------------------------------------------------------
    def commit(
        self,
        new_items: Sequence[NewItem] = (),
        files: Sequence[FileEntry] = (),
        removed_paths: Iterable[str] = (),
        skipped: Sequence[SkippedFile] = (),
    ) -> None:
        """Apply one batch of changes in a single transaction, then mirror it in FAISS. An item
        whose content is already stored gets the new analysis and a new vector id, keeping its
        item id; its old vector becomes a tombstone, as do the vectors of deleted items."""
        if not self.writable:
            raise MoairError("this index was opened read-only")
        now = time.time()
        dead: list[int] = []
        with self._db:
            next_vector_id = int(self._db.execute("SELECT value FROM meta WHERE key = 'next_vector_id'").fetchone()[0])
            added_vector_ids = []
            for item in new_items:
                values = (
                    item.perception.model_dump_json(),
                    item.verbalization.model_dump_json(),
                    _versions_json(item.versions),
                    np.ascontiguousarray(item.vector, dtype=np.float32).tobytes(),
                    now,
                    item.modality,
                    next_vector_id,
                )
                old = self._db.execute("SELECT vector_id FROM items WHERE content_hash = ?", (item.content_hash,)).fetchone()
                if old is None:
                    self._db.execute(
                        "INSERT INTO items (perception, verbalization, expert_versions, vector, added_at, modality,"
                        " vector_id, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (*values, item.content_hash),
                    )
                else:
                    self._db.execute(
                        "UPDATE items SET perception = ?, verbalization = ?, expert_versions = ?, vector = ?,"
                        " added_at = ?, modality = ?, vector_id = ? WHERE content_hash = ?",
                        (*values, item.content_hash),
                    )
                    dead.append(old[0])
                added_vector_ids.append(next_vector_id)
                next_vector_id += 1
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_vector_id'", (str(next_vector_id),))
            for entry in files:
                item_id = self.item_id_for_hash(entry.content_hash)
                self._db.execute(
                    f"INSERT OR REPLACE INTO files (path, item_id, size, mtime_ns) VALUES ({PATH}, ?, ?, ?)",
                    (path_bytes(entry.path), item_id, entry.size, entry.mtime_ns),
                )
                self._db.execute(f"DELETE FROM skipped WHERE path = {PATH}", (path_bytes(entry.path),))
            for path in removed_paths:
                self._db.execute(f"DELETE FROM files WHERE path = {PATH}", (path_bytes(path),))
                self._db.execute(f"DELETE FROM skipped WHERE path = {PATH}", (path_bytes(path),))
            self._db.executemany(
                f"INSERT OR REPLACE INTO skipped (path, size, mtime_ns, reason, kind) VALUES ({PATH}, ?, ?, ?, ?)",
                [(path_bytes(s.path), s.size, s.mtime_ns, s.reason, s.kind) for s in skipped],
            )
            orphans = self._db.execute("SELECT id, vector_id FROM items WHERE id NOT IN (SELECT item_id FROM files)").fetchall()
            if orphans:
                self._db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i, _ in orphans])
                dead += [v for _, v in orphans]
        if added_vector_ids:
            self._shards.add(np.array(added_vector_ids, np.int64), self.project(np.stack([i.vector for i in new_items])))
        self._shards.tombstones.update(dead)
        if added_vector_ids or dead:
            self._vectors_changed()
        manifest = self._shards.manifest
        if manifest.requested == ann.AUTO and manifest.index_type == ann.EXACT:
            if ann.flat_bytes(len(self), self.config.layout.dim) > FLAT_OVERSHOOT * ann.EXACT_SCAN_BYTES:
                self.maintain()  # a large first import: leave Flat before it takes all the memory


def _outgrown(manifest: VectorManifest, live: int, wanted: str) -> bool:
    """Whether an auto-chosen index should be built again as ``wanted`` for ``live`` vectors:
    when it changes between exact and approximate, or the collection grew or shrank enough that
    the IVF list count is far off (retraining costs a pass over every vector)."""
    if (manifest.index_type == ann.EXACT) != (wanted == ann.EXACT):
        return True
    grown = live / max(manifest.tuned_items, 1)
    return grown >= GROWTH_TO_RETRAIN or grown <= 1 / GROWTH_TO_RETRAIN


def _upgrade_schema(db: sqlite3.Connection) -> None:
    """Add what older indexes lack: the modality column, vector ids (equal to item ids, as the
    old FAISS file used), the vector id counter and the kind of each skip (an "analysis failed"
    skip of an older index becomes one that the next run tries again)."""
    columns = {c[1] for c in db.execute("PRAGMA table_info(items)")}
    skip_columns = {c[1] for c in db.execute("PRAGMA table_info(skipped)")}
    with db:
        if "kind" not in skip_columns:
            db.execute("ALTER TABLE skipped ADD COLUMN kind TEXT NOT NULL DEFAULT 'content'")
            db.execute(f"UPDATE skipped SET kind = {LEGACY_SKIP_KIND}")
        if "modality" not in columns:  # indexes made before items could be texts hold images only
            db.execute("ALTER TABLE items ADD COLUMN modality TEXT NOT NULL DEFAULT 'image'")
        if "vector_id" not in columns:
            db.execute("ALTER TABLE items ADD COLUMN vector_id INTEGER")
            db.execute("UPDATE items SET vector_id = id")
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS items_by_vector ON items(vector_id)")
        if db.execute("SELECT 1 FROM meta WHERE key = 'next_vector_id'").fetchone() is None:
            last = db.execute("SELECT MAX(seq) FROM sqlite_sequence WHERE name = 'items'").fetchone()[0] or 0
            db.execute("INSERT INTO meta VALUES ('next_vector_id', ?)", (str(last + 1),))


def _take_lock(path: Path) -> IO:
    """The index's write lock (held while the returned file is open); ``MoairError`` when another
    process holds it."""
    lock = open(path / LOCK_NAME, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise MoairError(f"another moair process is writing to {path}; wait for it to finish") from None
    return lock


def _creation_leftover(name: str) -> bool:
    """A file that an index creation killed part-way may leave (the database being built, its WAL)."""
    return name == LOCK_NAME or name.startswith(DB_NAME + BUILDING_SUFFIX)


# A file name is any bytes but NUL and "/", not always UTF-8 (archives, cameras, other systems):
# Python holds the bytes that are not UTF-8 as lone surrogates ("surrogateescape"), and SQLite's
# TEXT holds the bytes themselves. So a path is bound as its bytes, cast to TEXT, and read back
# by a text factory that undoes the escape; equality and ordering stay byte-wise.
PATH = "CAST(? AS TEXT)"
_AT_OR_BELOW = f"path = {PATH} OR substr(CAST(path AS BLOB), 1, ?) = ?"


def path_bytes(path: str) -> bytes:
    """``path`` as the bytes the store keeps (bind it with ``PATH``)."""
    return path.encode("utf-8", "surrogateescape")


def _at_or_below(root: Path) -> tuple[bytes, int, bytes]:
    prefix = path_bytes(str(root).rstrip("/") + "/")
    return path_bytes(str(root)), len(prefix), prefix


def _reading_paths(db: sqlite3.Connection) -> sqlite3.Connection:
    db.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    return db


def _versions_json(versions: dict[str, str]) -> str:
    return json.dumps(versions, sort_keys=True)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that never writes. In a folder that cannot be written, SQLite cannot make the
    shared-memory file a WAL database needs, so it reads the database file as immutable: correct
    when no write-ahead log is left over (a writer that closed cleanly folds it in)."""
    uri = f"file:{urllib.parse.quote(os.fsencode(path.absolute()))}?mode=ro"
    if not os.access(path.parent, os.W_OK):
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise MoairError(
                f"{path.parent} is read-only and holds a write-ahead log of changes not folded into the database "
                "(a writer was stopped); open it once where it can be written"
            )
        uri += "&immutable=1"
    return _reading_paths(sqlite3.connect(uri, uri=True, check_same_thread=False))


def _connect(path: Path) -> sqlite3.Connection:
    db = _reading_paths(sqlite3.connect(path, check_same_thread=False))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


_gpu_resources = None  # kept for the life of the process: GPU indexes point into it
GPU_MAX_K = 2048  # faiss GPU search returns at most this many neighbours


def _gpu_searcher(shards: Shards) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None:
    """Search on a GPU copy of the shards when this faiss build sees a GPU (the faiss-gpu
    package), else None. GPU indexes take no id selector, so tombstones are filtered after
    asking for that many more neighbours."""
    global _gpu_resources
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0 or not shards.shards:
        return None
    if len(shards.tombstones) + 1 > GPU_MAX_K:
        return None
    try:
        if _gpu_resources is None:
            _gpu_resources = faiss.StandardGpuResources()
        on_gpu = [faiss.index_cpu_to_gpu(_gpu_resources, 0, s.index) for s in shards.shards]
    except RuntimeError:
        return None  # a type the GPU does not implement (HNSW, say): search on the CPU
    joined = faiss.IndexShards(shards.dim, False, False)
    for index in on_gpu:
        joined.add_shard(index)
    if shards.manifest.knob == "nprobe":
        faiss.GpuParameterSpace().set_index_parameter(joined, "nprobe", shards.manifest.knob_value)
    dead = np.fromiter(shards.tombstones, np.int64, len(shards.tombstones))

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        wanted = min(k + len(dead), GPU_MAX_K, int(joined.ntotal))
        scores, ids = joined.search(queries, wanted)
        if len(dead):  # tombstones out, the survivors moved forward, -1 padding behind them
            order = np.argsort(np.isin(ids, dead), axis=1, kind="stable")
            scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
            ids[np.isin(ids, dead)] = -1
        return scores[:, :k], ids[:, :k]

    search.indexes = (on_gpu, joined)  # the shards must outlive IndexShards, which does not own them
    return search
