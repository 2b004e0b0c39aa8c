"""The FAISS side of an index: vectors in shard files named by a manifest, tombstones, search.

Files in ``INDEX_DIR/vectors/``::

    shard-N.faiss      one FAISS index each, up to ``shard_size`` vectors; searched as one
                       (faiss.IndexShards). Written once under a new name, never modified.
    trained-N.faiss    an empty trained index (IVF centroids, codebooks): new shards are copies

The manifest (``VectorManifest``) lives in SQLite's ``meta`` table, so switching to new files is
one transaction: files are written and fsynced first, the manifest row is replaced, and only then
are the old files deleted. A kill -9 at any point leaves the manifest naming complete files.

Vector ids are never reused. A deleted or re-analysed item's old vector stays in its shard as a
*tombstone* until ``compact``: searches skip tombstones through a faiss IDSelector.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel

from indexer import ann
from indexer.errors import MoairError

FOLDER = "vectors"
SHARD_BYTES = 1 << 30  # a shard file holds about this much (full floats: 130k moair vectors; SQ8: 520k)
MIN_SHARD_SIZE = 1 << 16
MMAP_MIN_BYTES = 64 << 20  # shard files at least this large are memory-mapped, not read
_FILE_NAME = re.compile(r"^(shard|trained)-\d+\.faiss(\.tmp)?$")


class ShardFile(BaseModel):
    file: str
    count: int  # vectors in it, tombstones included
    sha256: str | None = None  # of the file's bytes as written; None in manifests made before checksums


class VectorManifest(BaseModel):
    """What the vector files hold and how they are searched; kept in SQLite's meta table."""

    requested: str = ann.AUTO  # what the user asked for: auto, or a faiss index_factory string
    memory_budget: int | None = None  # bytes; None: the default share of Flat (ann.choose_index_type)
    recall_target: float = ann.DEFAULT_RECALL_TARGET
    index_type: str = ann.EXACT  # the index_factory string the files were built with
    trained_file: str | None = None
    trained_sha256: str | None = None
    shards: list[ShardFile] = []
    shard_size: int | None = None  # vectors per shard file; None: about SHARD_BYTES each
    knob: str | None = None  # nprobe or efSearch, tuned to recall_target
    knob_value: int | None = None
    recall_estimate: float = 1.0  # recall@10 against exact search, measured when tuned
    tuned_items: int = 0  # live vectors when last tuned
    next_file: int = 0


@dataclass
class _Shard:
    index: faiss.Index
    file: str | None  # None until saved
    mapped: bool = False  # memory-mapped from its file: read-only
    sha256: str | None = None  # of its file

    @property
    def count(self) -> int:
        return int(self.index.ntotal)


@dataclass
class Shards:
    """The loaded shard indexes of one manifest, plus tombstones (ids in FAISS that are not live)."""

    folder: Path
    dim: int
    manifest: VectorManifest
    template: faiss.Index | None = None  # empty and trained; None for types that need no training
    shards: list[_Shard] = field(default_factory=list)
    tombstones: set[int] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)  # what was wrong with the files on load

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: Path, dim: int, manifest: VectorManifest, writable: bool) -> Shards:
        """The shards the manifest names. A file that is missing, unreadable or not what the
        manifest says is left out and noted in ``problems`` (its live vectors are re-added from
        SQLite by the caller). Large files are memory-mapped, except a writer's last shard, which
        grows. A file's checksum is checked when it is read whole, and by a writer always (a
        reader would read a memory-mapped file whole just to check it: ``moair verify`` does)."""
        shards = cls(folder, dim, manifest, None)
        if folder.exists() and not folder.is_dir():
            raise MoairError(
                f"{folder} should be the folder of the vector files but is a file: move it away and open the index "
                "again (the vectors are rebuilt from the database)"
            )
        if manifest.trained_file and writable:  # checked now, so a lost one is retrained at once
            shards.template = shards._read(manifest.trained_file, 0, manifest.trained_sha256, mmap=False, check=True)
        for position, entry in enumerate(manifest.shards):
            path = folder / entry.file
            last = position == len(manifest.shards) - 1
            mmap = path.exists() and path.stat().st_size >= MMAP_MIN_BYTES and not (writable and last)
            index = shards._read(entry.file, entry.count, entry.sha256, mmap=mmap, check=writable or not mmap)
            if index is not None:
                shards.shards.append(_Shard(index, entry.file, mapped=mmap, sha256=entry.sha256))
        return shards

    @cached_property
    def _expected(self) -> faiss.Index:
        """An empty index of the manifest's type: what every file should be."""
        return ann.build_index(self.manifest.index_type, self.dim)

    def _read(self, name: str, expect_count: int, sha256: str | None, mmap: bool, check: bool) -> faiss.Index | None:
        path = self.folder / name
        wanted = self._expected
        # inverted lists and flat codes are mapped by two different flags, which do not combine
        flag = (
            (faiss.IO_FLAG_MMAP if faiss.try_extract_index_ivf(wanted) is not None else faiss.IO_FLAG_MMAP_IFC)
            if mmap
            else 0
        )
        try:
            index = faiss.read_index(str(path), flag)
        except RuntimeError as e:
            reason = "missing" if not path.exists() else f"unreadable ({str(e).strip().splitlines()[-1][:80]})"
            self.problems.append(f"{name}: {reason}")
            return None
        if not (
            index.d == self.dim
            and index.metric_type == faiss.METRIC_INNER_PRODUCT
            and type(faiss.downcast_index(index)) is type(faiss.downcast_index(wanted))
            and index.ntotal == expect_count
        ):
            self.problems.append(
                f"{name}: not the {self.manifest.index_type} index with {expect_count} vectors the manifest names"
            )
            return None
        if check and sha256 is not None and file_sha256(path) != sha256:
            self.problems.append(f"{name}: its bytes changed since it was written (checksum mismatch)")
            return None
        return index

    def unchecked_file_problems(self) -> list[str]:
        """The files ``load`` did not check against their checksums (memory-mapped for a reader),
        checked now."""
        return [
            f"{shard.file}: its bytes changed since it was written (checksum mismatch)"
            for shard in self.shards
            if shard.mapped and shard.sha256 and file_sha256(self.folder / shard.file) != shard.sha256
        ]

    # -- reading -------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """Vectors per shard file."""
        if self.manifest.shard_size is not None:
            return self.manifest.shard_size
        return max(MIN_SHARD_SIZE, int(SHARD_BYTES // ann.bytes_per_vector(self.manifest.index_type, self.dim)))

    @property
    def ntotal(self) -> int:
        return sum(s.count for s in self.shards)

    def ids(self) -> np.ndarray:
        """Every vector id in the shards (tombstones included)."""
        return np.concatenate([_ids_of(s.index) for s in self.shards]) if self.shards else np.zeros(0, np.int64)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, knob_value: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, vector ids) per query over every shard, tombstones skipped; with
        ``allowed``, only those ids. ``knob_value`` overrides the tuned nprobe / efSearch."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if not self.shards:
            return np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
        # faiss keeps raw pointers: the arrays and selectors must outlive the search
        keep: list[object] = []
        selector = None
        if allowed is not None:
            allowed = np.ascontiguousarray(allowed, dtype=np.int64)
            selector = faiss.IDSelectorBatch(len(allowed), faiss.swig_ptr(allowed))
            keep.append(allowed)
        elif self.tombstones:
            dead = np.fromiter(self.tombstones, dtype=np.int64, count=len(self.tombstones))
            inner = faiss.IDSelectorBatch(len(dead), faiss.swig_ptr(dead))
            selector = faiss.IDSelectorNot(inner)
            keep += [dead, inner]
        if knob_value is None:
            knob_value = self.manifest.knob_value
        params = ann.search_params(self.shards[0].index, knob_value, selector)
        if len(self.shards) == 1:
            return self.shards[0].index.search(queries, k, params=params)
        # Not threaded: IndexIDMap points the shared params' selector at its own id translation
        # during its search, so shards searched at once would use each other's ids (or a freed one).
        joined = faiss.IndexShards(self.dim, False, False)
        for shard in self.shards:
            joined.add_shard(shard.index)
        return joined.search(queries, k, params=params)

    def index_bytes(self) -> int:
        """Bytes of the shard files: the searched index's size in memory when read whole."""
        names = [s.file for s in self.shards if s.file]
        saved = sum((self.folder / n).stat().st_size for n in names if (self.folder / n).exists())
        unsaved = sum(ann.serialized_bytes(s.index) for s in self.shards if s.file is None)
        return saved + unsaved

    # -- writing -------------------------------------------------------------------------------
    def new_shard_index(self) -> faiss.Index:
        if self.template is None and self.manifest.trained_file:  # a reader reads it when first needed
            self.template = self._read(
                self.manifest.trained_file, 0, self.manifest.trained_sha256, mmap=False, check=True
            )
            if self.template is None:
                raise MoairError(f"the trained index in {self.folder} is damaged; run moair optimize to train it again")
        if self.template is not None:
            return faiss.clone_index(self.template)
        return ann.build_index(self.manifest.index_type, self.dim)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Append vectors: to the last shard while it has room and is in memory, then to new ones."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        start = 0
        while start < len(ids):
            if not self.shards or self.shards[-1].mapped or self.shards[-1].count >= self.capacity:
                self.shards.append(_Shard(self.new_shard_index(), None))
            shard = self.shards[-1]
            take = min(len(ids) - start, self.capacity - shard.count)
            shard.index.add_with_ids(vectors[start : start + take], ids[start : start + take])
            shard.file = None  # changed: saved under a new name
            start += take

    def compact(self) -> int:
        """Remove the tombstones from the shards; returns how many were removed."""
        if not self.tombstones:
            return 0
        dead = np.fromiter(self.tombstones, dtype=np.int64, count=len(self.tombstones))
        removed = 0
        for position, shard in enumerate(self.shards):
            holds = np.isin(_ids_of(shard.index), dead)
            if not holds.any():
                continue
            index = shard.index
            if shard.mapped:
                index = faiss.read_index(str(self.folder / shard.file))  # a private copy that can change
            removed += index.remove_ids(faiss.IDSelectorBatch(dead))
            self.shards[position] = _Shard(index, None)
        self.shards = [s for s in self.shards if s.count]
        self.tombstones.clear()
        return removed

    def save(self) -> VectorManifest:
        """Write every changed shard (and a new template) under new names, durably; returns the
        manifest naming the files. The caller commits it, then calls ``delete_unlisted``."""
        self.folder.mkdir(exist_ok=True)
        manifest = self.manifest.model_copy(deep=True)
        if self.template is not None and manifest.trained_file is None:
            manifest.trained_file, manifest.next_file = f"trained-{manifest.next_file}.faiss", manifest.next_file + 1
            manifest.trained_sha256 = _write_index(self.template, self.folder / manifest.trained_file)
        entries = []
        for shard in self.shards:
            if shard.file is None:
                shard.file, manifest.next_file = f"shard-{manifest.next_file}.faiss", manifest.next_file + 1
                shard.sha256 = _write_index(shard.index, self.folder / shard.file)
            entries.append(ShardFile(file=shard.file, count=shard.count, sha256=shard.sha256))
        manifest.shards = entries
        self.manifest = manifest
        return manifest

    def delete_unlisted(self) -> None:
        """Delete vector files the manifest does not name (replaced ones, or left by a kill)."""
        if not self.folder.is_dir():
            return
        listed = {s.file for s in self.manifest.shards} | {self.manifest.trained_file}
        for path in self.folder.iterdir():
            if _FILE_NAME.match(path.name) and path.name not in listed:
                path.unlink(missing_ok=True)


def _ids_of(index: faiss.Index) -> np.ndarray:
    """The ids stored in an id-mapped or IVF index."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    parts = []
    for list_no in range(ivf.nlist):
        size = lists.list_size(list_no)
        if size:
            parts.append(faiss.rev_swig_ptr(lists.get_ids(list_no), size).copy())
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _write_index(index: faiss.Index, target: Path) -> str:
    """Write ``index`` durably to ``target``; returns the file's checksum."""
    tmp = target.with_name(target.name + ".tmp")
    faiss.write_index(index, str(tmp))
    digest = file_sha256(tmp)
    durable_replace(tmp, target)
    return digest


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def durable_replace(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target`` atomically, with both the file and the rename on disk."""
    with open(source, "rb") as f:
        os.fsync(f.fileno())
    os.replace(source, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
