"""What an index records about itself: how it was built (``IndexConfig``, with its projection
heads), how its vector index is chosen (``IndexSettings``), and what it reports (``IndexStats``,
``VerifyReport``)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from indexer import ann
from indexer.errors import MoairError
from indexer.mixture import Layout
from indexer.records import FilePath
from indexer.shards import VectorManifest
from indexer.store.formats import SCHEMA_VERSION


class PluginSpec(BaseModel):
    """One plug-in an index was built with, recorded the same way for every kind (text embedder,
    backbone, expert): its registry name, the options that build it again (a checkpoint folder;
    empty for a packaged model) and the version its output is tied to."""

    name: str
    options: dict[str, str] = {}
    version: str = ""


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
    text_embedder: PluginSpec
    backbone: PluginSpec
    experts: list[PluginSpec]  # in the order they run
    layout: Layout
    created_at: float
    heads: dict[str, HeadRecord] = {}  # embedding space ("language", "visual") -> its projection head

    def expert_versions(self) -> dict[str, str]:
        return {expert.name: expert.version for expert in self.experts}


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
