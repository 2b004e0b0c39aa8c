"""The index directory: a SQLite catalog (the source of truth) and FAISS shard files (a persisted cache).

Layout of ``INDEX_DIR``::

    moair.sqlite    the catalog: items, files, skipped, meta (``catalog.py``)
    vectors/        FAISS shard files and the trained template (``vectors.py``, ``indexer.shards``)
    heads/          projection heads the index searches through (``projection.py``)
    lock            held by the one process allowed to write

``Store`` is the facade over those parts: it opens, creates, locks, saves and closes them, and it
alone orchestrates a change that touches more than one (a commit, a new set of heads). The parts
never call the facade, nor each other: the vector index reads the catalog's vectors through the
row source it is given, projected through the heads.

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
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from indexer import ann
from indexer.errors import Locked, MoairError, damaged_database
from indexer.head import ProjectionHead
from indexer.mixture import Layout
from indexer.shards import FOLDER as VECTORS_FOLDER
from indexer.store.catalog import (
    BUILDING_SUFFIX,
    DB_NAME,
    Batch,
    Catalog,
    FileEntry,
    FileState,
    NewItem,
    SkipKind,
    SkippedFile,
)
from indexer.store.config import HeadRecord, IndexConfig, IndexSettings, IndexStats, PluginSpec, VerifyReport
from indexer.store.projection import HEADS_FOLDER, Projection
from indexer.store.vectors import ProgressCallback, VectorIndex

__all__ = [
    "Batch",
    "DB_NAME",
    "HEADS_FOLDER",
    "FileEntry",
    "FileState",
    "IndexConfig",
    "IndexSettings",
    "IndexStats",
    "NewItem",
    "PluginSpec",
    "SkipKind",
    "SkippedFile",
    "Store",
    "VerifyReport",
    "is_index_dir",
]

CHANCE_SAMPLE = 2000  # stored vectors sampled to measure how a head moves the chance-level cosine
LEGACY_FAISS_NAME = "vectors.faiss"  # the single FAISS file of indexes made before shards
LOCK_NAME = "lock"
FLAT_OVERSHOOT = 4  # an auto index being filled leaves Flat mid-run once it is this far past exact's limit


def is_index_dir(path: Path) -> bool:
    return (path / DB_NAME).is_file()


class Store:
    """One open index directory. Writers hold an exclusive lock; readers do not need one."""

    def __init__(
        self, path: Path, catalog: Catalog, config: IndexConfig, writable: bool, lock: IO | None = None
    ) -> None:
        self.path = path
        self.config = config
        self.writable = writable
        self.catalog = catalog
        self._lock_file = lock
        if writable and self._lock_file is None:
            self._lock_file = _take_lock(path)
        try:
            self.projection = Projection.load(path, config.layout, config.heads)
            self.vectors = VectorIndex.load(
                path / VECTORS_FOLDER,
                config.layout.dim,
                catalog.manifest,
                self._searched_rows,
                catalog.live_vector_ids,
                writable,
                self.query_layout,
            )
        except sqlite3.DatabaseError as e:
            self.close_quietly()
            raise damaged_database(path / DB_NAME, e) from None
        except MoairError:
            self.close_quietly()
            raise

    def close_quietly(self) -> None:
        """Release the database and the lock without saving (the index could not be opened)."""
        self.catalog.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, config: IndexConfig) -> Store:
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise MoairError(f"{path} exists and is not a directory; choose another --index path")
        if path.is_dir() and not is_index_dir(path) and any(not _creation_leftover(p.name) for p in path.iterdir()):
            raise MoairError(f"{path} is a non-empty directory that is not a moair index; choose another --index path")
        path.mkdir(parents=True, exist_ok=True)
        lock = _take_lock(path)  # before anything is built: two creations of one index must not interleave
        try:
            if is_index_dir(path):
                raise Locked(
                    f"another moair process created an index at {path} meanwhile; run the command again to add to it"
                )
            for leftover in path.iterdir():
                if leftover.name != LOCK_NAME and _creation_leftover(leftover.name):
                    leftover.unlink()
            Catalog.create(path, config)
            return cls.open(path, writable=True, lock=lock)
        except BaseException:
            lock.close()
            raise

    @classmethod
    def open(cls, path: Path, writable: bool = False, lock: IO | None = None) -> Store:
        """Open the index at ``path``; ``writable`` takes its write lock (or uses ``lock``, one
        already taken)."""
        path = Path(path)
        if not path.exists():
            raise MoairError(f"no index at {path}; build one with: moair index FOLDER --index {path}")
        if not is_index_dir(path):
            raise MoairError(f"{path} is not a moair index (no {DB_NAME} inside)")
        if writable and not os.access(path, os.W_OK):
            raise MoairError(
                f"{path} cannot be written (a read-only folder or file system): search it, but index, remove or "
                "optimize where it is writable"
            )
        catalog, config = Catalog.open(path, writable)
        return cls(path, catalog, config, writable, lock)

    def close(self) -> None:
        if self.writable and self.vectors.unsaved:
            self.save()
        self.catalog.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_writable(self) -> None:
        if not self.writable:
            raise MoairError("this index was opened read-only")

    # -- the parts' views ------------------------------------------------------------------------
    def _searched_rows(self, vector_ids: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The vector index's row source: the catalog's vectors through the projection heads."""
        for ids, rows in self.catalog.vector_chunks(vector_ids):
            yield ids, self.projection.rows(rows)

    @property
    def query_layout(self) -> Layout:
        """The layout queries are composed with (the stored one, shifted by the heads)."""
        return self.projection.query_layout

    def project_parts(self, parts: dict[str, np.ndarray | None]) -> dict[str, np.ndarray | None]:
        """A query's block embeddings through the projection heads."""
        return self.projection.parts(parts)

    # -- projection heads ------------------------------------------------------------------------
    def set_heads(
        self,
        heads: dict[str, ProjectionHead | None],
        probes: dict[str, np.ndarray] | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Search through these projection heads from now on (None removes a space's head).
        ``probes[space]`` are query embeddings of texts unrelated to the collection, which measure
        how a head moves the query-to-item chance level (without them the item-to-item shift is
        used). The head files are written first, the vector index is built again from the stored
        vectors, and the configuration naming the heads is committed together with the new vector
        index: a crash at any point leaves the old index or the new one, whole."""
        self._check_writable()
        folder = self.path / HEADS_FOLDER
        records, active = dict(self.config.heads), dict(self.projection.heads)
        sample = self._chance_sample()
        for space, head in heads.items():
            if head is None:
                records.pop(space, None)
                active.pop(space, None)
                continue
            file = f"{space}-{head.fingerprint}.npz"
            head.save(folder / file)
            item_shift, query_shift = self.projection.chance_shifts(sample, space, head, (probes or {}).get(space))
            records[space] = HeadRecord(file=file, version=head.version, item_shift=item_shift, query_shift=query_shift)
            active[space] = head
        before = self.projection
        self.projection = Projection(self.config.layout, active, records)
        try:
            self.vectors.rebuild(self.query_layout, progress=progress)
            self.save(config=self.config.model_copy(update={"heads": records}))
        except BaseException:
            self.projection = before
            raise
        kept = {record.file for record in records.values()}
        for path in folder.glob("*.npz") if folder.is_dir() else ():
            if path.name not in kept:
                path.unlink()

    def _chance_sample(self) -> np.ndarray:
        """Up to ``CHANCE_SAMPLE`` stored rows, as stored (before any head)."""
        live = self.catalog.live_vector_ids()
        if len(live) > CHANCE_SAMPLE:
            live = np.random.default_rng(0).choice(live, CHANCE_SAMPLE, replace=False)
        chunks = [rows for _, rows in self.catalog.vector_chunks(np.sort(live))]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.config.layout.dim), np.float32)

    # -- the vector index ------------------------------------------------------------------------
    def save(self, config: IndexConfig | None = None) -> None:
        """Write changed FAISS shards under new names, then commit the manifest naming them (and a
        new ``config`` with it, when given), then delete the files it no longer names (each step
        leaves a complete index behind)."""
        self.catalog.save_manifest(self.vectors.save(), config)
        if config is not None:
            self.config = config
        self.vectors.delete_unlisted()
        (self.path / LEGACY_FAISS_NAME).unlink(missing_ok=True)

    def forget_unsaved_vectors(self) -> None:
        """Close without writing the FAISS files (a full disk): they are a cache of SQLite, checked
        against it and rebuilt at the next open."""
        self.vectors.forget_unsaved()

    def configure(self, settings: IndexSettings) -> None:
        """Change how the vector index is chosen and tuned; takes effect at ``maintain`` or ``optimize``."""
        self.vectors.configure(settings)

    def maintain(self, progress: ProgressCallback | None = None) -> str | None:
        """Keep the vector index fit as the collection changes (see ``VectorIndex.maintain``)."""
        return self.vectors.maintain(self.query_layout, progress)

    def optimize(self, progress: ProgressCallback | None = None) -> str:
        """Rebuild the vector index from SQLite and save it (see ``VectorIndex.optimize``)."""
        line = self.vectors.optimize(self.query_layout, progress)
        self.save()
        return line

    def verify(self) -> list[str]:
        """What is wrong with the index now (empty when nothing): the catalog's checks, then the
        vector files' checksums and their agreement with the catalog."""
        problems = self.catalog.problems()
        return problems or self.vectors.problems()

    @property
    def repaired_at_open(self) -> list[str]:
        """What was wrong with the vector files when the index was opened (rebuilt from SQLite:
        in memory for a reader, saved by a writer)."""
        return self.vectors.repaired_at_open

    def tombstones_count(self) -> int:
        """Dead vectors still in FAISS (skipped at search until compaction)."""
        return len(self.vectors.shards.tombstones)

    # -- reading ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Live items in the vector index."""
        return len(self.vectors)

    def item_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The vectors of items ``ids`` as searched (through the projection heads)."""
        return self.projection.rows(self.catalog.vectors(ids))

    def stats(self) -> IndexStats:
        manifest = self.vectors.manifest
        folder = self.path / VECTORS_FOLDER
        on_disk = sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".faiss") if folder.is_dir() else 0
        shards = self.vectors.shards
        return IndexStats(
            path=str(self.path),
            items=len(self),
            paths=self.catalog.file_count(),
            items_by_modality=self.catalog.items_by_modality(),
            **self.catalog.skip_counts(),
            index_type=manifest.index_type,
            requested_index_type=manifest.requested,
            dim=self.config.layout.dim,
            exact=manifest.knob is None and manifest.index_type == ann.EXACT,
            search_knob=f"{manifest.knob}={manifest.knob_value}" if manifest.knob else "",
            reranked=ann.refine_factor(manifest.index_type),
            recall_estimate=manifest.recall_estimate,
            recall_target=manifest.recall_target,
            tuned_items=manifest.tuned_items,
            shards=len(shards.shards),
            tombstones=len(shards.tombstones),
            memory_mapped_shards=sum(s.mapped for s in shards.shards),
            index_bytes=shards.index_bytes(),
            flat_bytes=ann.flat_bytes(len(self), self.config.layout.dim),
            memory_budget=manifest.memory_budget,
            faiss_file_bytes=on_disk,
            database_bytes=(self.path / DB_NAME).stat().st_size,
            text_embedder=self.config.text_embedder.name,
            backbone=self.config.backbone.name,
            experts=self.config.expert_versions(),
            heads={space: record.version for space, record in self.config.heads.items()},
        )

    # -- writing ---------------------------------------------------------------------------------
    def commit(self, batch: Batch) -> None:
        """Apply ``batch`` in a single transaction, then mirror it in FAISS. An item
        whose content is already stored gets the new analysis and a new vector id, keeping its
        item id; its old vector becomes a tombstone, as do the vectors of deleted items. A large
        first import into an auto index leaves exact search mid-run, before Flat takes all the
        memory (``maintain``)."""
        self._check_writable()
        added, dead = self.catalog.commit(batch)
        if added:
            rows = self.projection.rows(np.stack([item.vector for item in batch.new_items]))
            self.vectors.add(np.array(added, np.int64), rows)
        if dead:
            self.vectors.remove(dead)
        manifest = self.vectors.manifest
        if manifest.requested == ann.AUTO and manifest.index_type == ann.EXACT:
            if ann.flat_bytes(len(self), self.config.layout.dim) > FLAT_OVERSHOOT * ann.EXACT_SCAN_BYTES:
                self.maintain()


def _take_lock(path: Path) -> IO:
    """The index's write lock (held while the returned file is open); ``MoairError`` when another
    process holds it."""
    lock = open(path / LOCK_NAME, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise Locked(f"another moair process is writing to {path}; wait for it to finish") from None
    return lock


def _creation_leftover(name: str) -> bool:
    """A file that an index creation killed part-way may leave (the database being built, its WAL)."""
    return name == LOCK_NAME or name.startswith(DB_NAME + BUILDING_SUFFIX)
