"""The projection heads an index searches through (``moair train-head``), as applied to its rows.

SQLite keeps every item's vector as its encoders gave it; FAISS, re-ranking and "more like this"
see it through the heads, so a head can be trained again or removed without embedding anything
again. A head also moves the chance-level cosines the mixture subtracts, so the layout queries
are composed with is the stored one shifted by what each head did (``query_layout``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexer.errors import MoairError
from indexer.head import ProjectionHead
from indexer.mixture import EMBEDDING_SPACES, Layout
from indexer.store.config import HeadRecord

HEADS_FOLDER = "heads"  # projection heads (moair train-head), named <space>-<fingerprint>.npz


class Projection:
    """An index's heads (embedding space -> head) over its stored ``layout``."""

    def __init__(self, layout: Layout, heads: dict[str, ProjectionHead], records: dict[str, HeadRecord]) -> None:
        self.layout = layout
        self.heads = heads
        self.records = records

    @classmethod
    def load(cls, index: Path, layout: Layout, records: dict[str, HeadRecord]) -> Projection:
        """The heads ``records`` names, from the heads folder of the index at ``index``."""
        heads = {}
        for space, record in records.items():
            head = ProjectionHead.load(index / HEADS_FOLDER / record.file)
            if head.version != record.version:
                raise MoairError(
                    f"{index / HEADS_FOLDER / record.file} is not the head this index was built with; run moair "
                    "train-head again"
                )
            heads[space] = head
        return cls(layout, heads, records)

    @property
    def query_layout(self) -> Layout:
        """The layout queries are composed with: the chance levels as the projection heads moved
        them. Queries of the language blocks are embedded as queries (query_shift); the visual block
        compares images with images (item_shift) and, cross-modal, texts with images (query_shift)."""
        shifts, text_shifts = {}, {}
        for space, record in self.records.items():
            for block in EMBEDDING_SPACES[space]:
                shifts[block] = record.item_shift if space == "visual" else record.query_shift
                text_shifts[block] = record.query_shift
        return self.layout.shifted(shifts, text_shifts)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Stored item rows as searched: each present block through its space's projection head."""
        if not self.heads:
            return rows
        rows = np.array(rows, dtype=np.float32)
        slices = self.layout.slices()
        for space, head in self.heads.items():
            for block in EMBEDDING_SPACES[space]:
                where = slices[block]
                present = rows[:, where.stop - 1] > 0
                if present.any():
                    rows[present, where.start : where.stop - 1] = head.apply(
                        rows[present, where.start : where.stop - 1]
                    )
        return rows

    def parts(self, parts: dict[str, np.ndarray | None]) -> dict[str, np.ndarray | None]:
        """A query's block embeddings through the projection heads."""
        heads = {block: self.heads[space] for space in self.heads for block in EMBEDDING_SPACES[space]}
        return {
            name: vector if vector is None or name not in heads else heads[name].apply(vector)
            for name, vector in parts.items()
        }

    def chance_shifts(
        self, sample: np.ndarray, space: str, head: ProjectionHead, probes: np.ndarray | None
    ) -> tuple[float, float]:
        """How much ``head`` moves the mean cosine between different items of ``sample`` (stored
        rows), and between the unrelated ``probes`` and the items (the chance levels the mixture
        subtracts), averaged over the space's blocks; 0 with too few items. Without probes both
        are the first."""
        item_shifts, query_shifts = [], []
        slices = self.layout.slices()
        for block in EMBEDDING_SPACES[space]:
            where = slices[block]
            vectors = sample[sample[:, where.stop - 1] > 0, where.start : where.stop - 1]
            if len(vectors) < 2:
                continue
            projected = head.apply(vectors)
            pairs = np.roll(np.arange(len(vectors)), 1)  # each item with another one
            item_shifts.append(
                np.mean(np.sum(projected * projected[pairs], axis=1))
                - np.mean(np.sum(vectors * vectors[pairs], axis=1))
            )
            if probes is not None and len(probes):
                query_shifts.append(np.mean(head.apply(probes) @ projected.T) - np.mean(probes @ vectors.T))
        item_shift = round(float(np.mean(item_shifts)), 4) if item_shifts else 0.0
        return item_shift, round(float(np.mean(query_shifts)), 4) if query_shifts else item_shift
