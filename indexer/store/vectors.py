"""The FAISS half of an index: shard files (``indexer.shards``) that cache the vectors the catalog
holds, searched with exact re-ranking of lossy codes, and kept fit as the collection changes.

A ``VectorIndex`` never reads the catalog itself: it is fed a row source (the vectors of given
vector ids, or of every live one, as searched) and the ids that are live, so the same code serves
the store and ``benchmarks/bench_ann.py``. Building a new index type, compacting tombstones and
tuning the search knob (``maintain``, ``optimize``) are its own verbs; the layout queries are
composed with is handed to the verbs that tune, which make their queries from sampled items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np

from indexer import ann
from indexer.mixture import Layout
from indexer.shards import SHARD_BYTES, Shards, VectorManifest
from indexer.store.config import IndexSettings

TOMBSTONE_SHARE_TO_COMPACT = 0.25  # compact automatically once this share of FAISS's vectors are dead
GROWTH_TO_RETUNE = 2.0  # tune the search knob again once the collection has grown this much
GROWTH_TO_RETRAIN = 16.0  # ... and choose, train and build the index again after this much (auto type)
TUNING_QUERIES = 200
GPU_MAX_K = 2048  # faiss GPU search returns at most this many neighbours

RowSource = Callable[[np.ndarray | None], Iterator[tuple[np.ndarray, np.ndarray]]]
"""(vector ids, vectors as searched) in chunks: of the ids given that are live, or of every live one (by id)."""
ProgressCallback = Callable[[int, int], None]


class VectorIndex:
    """The shards of one index, with the row source they cache (see the module docstring)."""

    def __init__(self, shards: Shards, rows: RowSource, live_ids: Callable[[], np.ndarray]) -> None:
        self.shards = shards
        self._rows = rows
        self._live_ids = live_ids  # in the catalog's order
        self.unsaved = False  # changed since the shard files were written
        self._gpu_search = None

    @classmethod
    def load(
        cls,
        folder: Path,
        dim: int,
        manifest: Callable[[], VectorManifest | None],
        rows: RowSource,
        live_ids: Callable[[], np.ndarray],
        writable: bool,
        layout: Layout,
    ) -> VectorIndex:
        """Load the shard files the committed ``manifest()`` names, then make them agree with the
        row source (the consistency check): missing vectors are added, vectors no longer live
        become tombstones, and files that are damaged, or an index without a manifest, are
        rebuilt (tuned on queries composed with ``layout``)."""
        for _ in range(3):
            committed = manifest()
            if committed is None:  # a new index, or one made before shards: built from the rows
                shards = Shards(folder, dim, VectorManifest())
                break
            shards = Shards.load(folder, dim, committed, writable)
            if not shards.problems or manifest() == committed:
                break  # a reader can race a writer replacing the files: it reads the new manifest
        index = cls(shards, rows, live_ids)
        index.unsaved = committed is None and writable
        if writable and committed is not None and committed.trained_file and shards.template is None:
            # without the trained template no shard can be added to: train again from the rows
            index.rebuild(layout, note=f"trained index lost ({'; '.join(shards.problems)})")
            return index
        index._reconcile()
        if shards.problems:
            index.unsaved = True
        if writable:
            shards.delete_unlisted()  # files a killed save wrote but never listed
        return index

    def _reconcile(self) -> None:
        in_faiss = self.shards.ids()
        live = self._live_ids()
        self.shards.tombstones = set(np.setdiff1d(in_faiss, live, assume_unique=False).tolist())
        missing = np.setdiff1d(live, in_faiss)
        if len(missing):
            for ids, vectors in self._rows(missing):
                self.shards.add(ids, vectors)
            self.unsaved = True

    # -- reading ---------------------------------------------------------------------------------
    @property
    def manifest(self) -> VectorManifest:
        return self.shards.manifest

    @property
    def dim(self) -> int:
        return self.shards.dim

    def __len__(self) -> int:
        """Live vectors (tombstones are not counted)."""
        return int(self.shards.ntotal) - len(self.shards.tombstones)

    @property
    def repaired_at_open(self) -> list[str]:
        """What was wrong with the shard files when they were loaded (rebuilt from the rows)."""
        return list(self.shards.problems)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        knob_value: int | None = None,
        gpu: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, vector ids) per query row, -1 past the end; only ``allowed`` vector ids
        when given; at ``knob_value`` instead of the tuned one; on a GPU copy with ``gpu`` when
        this faiss build sees one. Lossy codes find ``REFINE_FACTOR * k`` candidates that the
        exact vectors of the row source re-rank."""
        return self._search(self.shards, queries, k, allowed, knob_value, gpu)[:2]

    def search_with_rows(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, gpu: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``search``, and the exact rows of the vectors found (queries x k x dim; zeros past the
        end), read from the row source once: those the re-ranking read, when the codes are lossy."""
        scores, vector_ids, rows = self._search(self.shards, queries, k, allowed, gpu=gpu, keep_rows=True)
        if rows is None:
            found = vector_ids[vector_ids >= 0]
            rows = np.zeros((*vector_ids.shape, self.dim), np.float32)
            rows[vector_ids >= 0] = self._vectors_by_vector_id(found)
        return scores, vector_ids, rows

    def _search(
        self,
        shards: Shards,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        knob_value: int | None = None,
        gpu: bool = False,
        keep_rows: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(scores, vector ids, and with ``keep_rows`` the rows the re-ranking read for them, or
        None when nothing was re-ranked)."""
        wanted = k * ann.refine_factor(shards.manifest.index_type)
        on_gpu = self._gpu() if gpu else None
        if on_gpu is not None:
            scores, vector_ids = on_gpu(queries, wanted)
        else:
            scores, vector_ids = shards.search(queries, wanted, allowed=allowed, knob_value=knob_value)
        if wanted == k:
            return scores, vector_ids, None
        read: list[tuple[np.ndarray, np.ndarray]] = []

        def exact_rows(ids: np.ndarray) -> np.ndarray:
            rows = self._vectors_by_vector_id(ids)
            if keep_rows:
                read.append((ids, rows))
            return rows

        scores, top = ann.rerank(queries, vector_ids, exact_rows, k)
        if not read:
            return scores, top, None
        ids, rows = read[0]  # sorted: rerank reads np.unique of the candidates
        kept = np.zeros((*top.shape, self.dim), np.float32)
        kept[top >= 0] = rows[np.searchsorted(ids, top[top >= 0])]
        return scores, top, kept

    def _vectors_by_vector_id(self, vector_ids: np.ndarray) -> np.ndarray:
        """The vectors of ``vector_ids``, one row each, an id given twice included (zeros for an
        id no longer live)."""
        unique, position = np.unique(np.asarray(vector_ids), return_inverse=True)
        rows = np.zeros((len(unique), self.dim), np.float32)
        for ids, vectors in self._rows(unique):
            rows[np.searchsorted(unique, ids)] = vectors
        return rows[position]

    def _gpu(self) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None:
        if self._gpu_search is None:
            self._gpu_search = _gpu_searcher(self.shards) or False
        return self._gpu_search or None

    def problems(self) -> list[str]:
        """What is wrong with the shards now (empty when nothing): unchecked file checksums, and
        every live vector in FAISS exactly once, every other FAISS vector a tombstone."""
        problems = self.shards.unchecked_file_problems()
        in_faiss = self.shards.ids()
        if len(np.unique(in_faiss)) != len(in_faiss):
            problems.append("a vector id is in FAISS twice")
        searchable = np.setdiff1d(in_faiss, np.fromiter(self.shards.tombstones, np.int64))
        live = np.sort(self._live_ids())
        if not np.array_equal(searchable, live):
            problems.append(f"FAISS searches {len(searchable)} vectors, SQLite has {len(live)} live ones")
        return problems

    # -- changing --------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.shards.add(ids, vectors)
        self._changed()

    def remove(self, ids: list[int]) -> None:
        """``ids`` become tombstones: skipped at search until compaction."""
        self.shards.tombstones.update(ids)
        self._changed()

    def _changed(self) -> None:
        """Save at close, and search a fresh GPU copy."""
        self.unsaved = True
        self._gpu_search = None

    def save(self) -> VectorManifest:
        """Write changed shards under new names; returns the manifest naming them (commit it, then
        ``delete_unlisted``)."""
        return self.shards.save()

    def delete_unlisted(self) -> None:
        self.shards.delete_unlisted()
        self.unsaved = False

    def forget_unsaved(self) -> None:
        """Close without writing the shard files (a full disk): they are a cache of the rows,
        checked against them and rebuilt at the next open."""
        self.unsaved = False

    def configure(self, settings: IndexSettings) -> None:
        """Change how the index is chosen and tuned; takes effect at ``maintain`` or ``optimize``."""
        if settings.apply(self.manifest, len(self), self.dim):
            self.unsaved = True

    def rebuild(self, layout: Layout, note: str = "", progress: ProgressCallback | None = None) -> None:
        """Build the index again from the rows (``build``), its search knob tuned to the recall
        target on queries composed with ``layout``; the old one is searched until it is done."""
        shards = self._built(progress)
        self._tune(shards, layout)
        if note and not shards.problems:  # a type that could not be trained says so instead
            shards.problems.append(note)
        self.shards = shards
        self._changed()

    def build(self, progress: ProgressCallback | None = None) -> None:
        """Build the index from the rows, untuned: choose its type (or take the requested one),
        train it on a sample, add every live vector. ``rebuild`` tunes it too."""
        self.shards = self._built(progress)
        self._changed()

    def _built(self, progress: ProgressCallback | None) -> Shards:
        live = np.sort(self._live_ids())
        manifest = self.manifest.model_copy(
            update={"shards": [], "trained_file": None, "trained_sha256": None, "knob": None, "knob_value": None}
        )
        manifest.index_type = self._wanted_type(manifest, len(live))
        empty = ann.build_index(manifest.index_type, self.dim)
        notes = []
        if len(live) < ann.minimum_training(empty):
            notes.append(
                f"{manifest.index_type} needs {ann.minimum_training(empty)} items to train on; searching exactly "
                "until then"
            )
            manifest.index_type = ann.EXACT
            empty = ann.build_index(ann.EXACT, self.dim)
        template = None
        sample_size = ann.training_size(empty, len(live), self.dim)
        if sample_size:
            sample = np.random.default_rng(0).choice(live, sample_size, replace=False)
            ann.train(empty, np.concatenate([v for _, v in self._rows(np.sort(sample))]))
            template = empty
        shards = Shards(self.shards.folder, self.dim, manifest, template, problems=notes)
        done = 0
        for ids, vectors in self._rows(live):
            shards.add(ids, vectors)
            done += len(ids)
            if progress:
                progress(done, len(live))
        return shards

    def _tune(self, shards: Shards, layout: Layout) -> None:
        """Measure recall@10 against exact search on queries made from a sample of items, and set
        the search knob (nprobe / efSearch) to the smallest value reaching the recall target."""
        manifest = shards.manifest
        live = self._live_ids()
        manifest.tuned_items = len(live)
        if ann.knob(shards.new_shard_index()) is None or len(live) <= ann.TUNING_K:
            manifest.knob, manifest.knob_value, manifest.recall_estimate = None, None, 1.0
            return
        rng = np.random.default_rng(1)
        sources = np.sort(rng.choice(live, min(TUNING_QUERIES, len(live)), replace=False))
        source_ids, source_vectors = zip(*self._rows(sources))
        source_ids = np.concatenate(source_ids)
        queries = layout.sample_queries(np.concatenate(source_vectors))
        k = ann.TUNING_K

        def without_source(found: np.ndarray) -> np.ndarray:
            # the item a query was made from is trivially found: leave it out of both rankings
            return np.array([[i for i in row if i != source][:k] for row, source in zip(found.tolist(), source_ids)])

        truth = without_source(ann.exact_top_k(queries, self._rows, k + 1))
        tuning = ann.tune(
            shards.shards[0].index,
            lambda q, _k, value: without_source(self._search(shards, q, k + 1, knob_value=value)[1]),
            queries,
            truth,
            manifest.recall_target,
        )
        manifest.knob, manifest.knob_value, manifest.recall_estimate = (
            tuning.knob,
            tuning.value,
            round(tuning.recall, 4),
        )

    def maintain(self, layout: Layout, progress: ProgressCallback | None = None) -> str | None:
        """Keep the index fit as the collection changes: build another type when the requested one
        differs or (auto) the collection outgrew the one built; compact when a quarter of the
        vectors are tombstones; tune again after the collection doubled. Returns what was done,
        or None."""
        manifest = self.manifest
        live = len(self)
        wanted = self._wanted_type(manifest, live)
        if wanted != manifest.index_type:
            needed = ann.minimum_training(ann.build_index(wanted, self.dim))
            if live < needed:
                return f"{wanted} needs {needed} items to train on; searching exactly until then"
        if wanted != manifest.index_type and (manifest.requested != ann.AUTO or _outgrown(manifest, live, wanted)):
            before = manifest.index_type
            self.rebuild(layout, progress=progress)
            return f"vector index rebuilt as {self.manifest.index_type} (was {before})"
        if self.shards.tombstones and len(self.shards.tombstones) >= TOMBSTONE_SHARE_TO_COMPACT * self.shards.ntotal:
            removed = self.shards.compact()
            self._changed()
            return f"compacted: {removed} dead vectors removed"
        if manifest.knob and live >= GROWTH_TO_RETUNE * max(manifest.tuned_items, 1):
            self._tune(self.shards, layout)
            self._changed()
            return f"search tuned: {manifest.knob}={manifest.knob_value}, recall@10 {manifest.recall_estimate:.3f}"
        return None

    def _wanted_type(self, manifest: VectorManifest, live: int) -> str:
        if manifest.requested != ann.AUTO:
            return manifest.requested
        # the shard count depends on the codes chosen: assume a byte a dimension (SQ8)
        shard_count = -(-live // manifest.shard_size) if manifest.shard_size else 1 + live * self.dim // SHARD_BYTES
        return ann.choose_index_type(live, self.dim, manifest.memory_budget, max(1, shard_count))

    def optimize(self, layout: Layout, progress: ProgressCallback | None = None) -> str:
        """Rebuild from the rows (tombstones dropped, the type chosen again or as requested,
        trained on a fresh sample, the knob tuned); returns a one-line summary. Save it after."""
        before = self.manifest.index_type
        self.rebuild(layout, progress=progress)
        after = self.manifest
        line = f"{after.index_type} (was {before}), {len(self.shards.shards)} shard(s)"
        if after.knob:
            line += f"; {after.knob}={after.knob_value} reaches recall@10 {after.recall_estimate:.3f}"
            line += f" (target {after.recall_target})"
        return line


def _outgrown(manifest: VectorManifest, live: int, wanted: str) -> bool:
    """Whether an auto-chosen index should be built again as ``wanted`` for ``live`` vectors:
    when it changes between exact and approximate, or the collection grew or shrank enough that
    the IVF list count is far off (retraining costs a pass over every vector)."""
    if (manifest.index_type == ann.EXACT) != (wanted == ann.EXACT):
        return True
    grown = live / max(manifest.tuned_items, 1)
    return grown >= GROWTH_TO_RETRAIN or grown <= 1 / GROWTH_TO_RETRAIN


_gpu_resources = None  # kept for the life of the process: GPU indexes point into it


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
