"""The gated mixture of expert embeddings (moair's analogue of MoAI-Mixer).

An item is described by several expert *blocks*:

- ``caption``: the text embedder on the retrieval verbalization (objects, counts, relations,
  colours, tags, text; with a Korean clause for a multilingual embedder): the language expert's
  view of all the auxiliary information;
- ``text``: the text embedder on the OCR text alone (absent when the image has none);
- ``visual``: the image backbone's feature (the visual expert).

Stored vector. For each block b the item stores ``[d_b, p_b]``: ``d_b`` is the block's
L2-normalised embedding (zeros when absent) and ``p_b`` is 1 when the block is present, else 0.

Query vector. The gate picks a weight ``w_b >= 0`` per block from the query (below) and the
query stores ``[w_b * q_b, -w_b * mu_b]``, where ``q_b`` is the query's normalised embedding for
that block and ``mu_b`` is the typical cosine between *unrelated* inputs of that encoder.

The inner product FAISS computes is therefore

    score = sum_b  p_b * w_b * (cos(q_b, d_b) - mu_b)

a weighted sum of per-expert cosines, each measured against chance level, where a block the item
lacks (no text in the image) adds exactly 0 rather than the bias every text-bearing image would
otherwise get. Per-expert contributions of a hit are the terms of this sum. Like MoAI-Mixer's
gates, the weights are per query ("token") and soft: no block is switched off by a top-k.

The gate that picks the weights per query lives on the query side, in ``retriever/gate.py``.
Rows made from stored items (tuning queries, "more like this") use the weights it gives the two
plain shapes of query, fixed here as ``IMAGE_QUERY_WEIGHTS`` and ``TEXT_QUERY_WEIGHTS``.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

# The encoder space each block's vectors live in (a projection head is trained per space).
EMBEDDING_SPACES = {"language": ("caption", "text"), "visual": ("visual",)}
# What retriever.gate weighs for an image query (its OCR block only when the image has text) and
# for a plain text query (its text matched against the OCR block too): tests/test_search.py checks.
IMAGE_QUERY_WEIGHTS = {"caption": 0.35, "text": 0.35, "visual": 1.0}
TEXT_QUERY_WEIGHTS = {"caption": 1.0, "text": 0.35, "visual": 0.0}


class Block(BaseModel):
    name: str
    dim: int
    unrelated_similarity: float
    # for a cross-modal visual block (CLIP, SigLIP): the typical cosine of an unrelated text and image
    unrelated_text_similarity: float | None = None


class Layout(BaseModel):
    """Where each block sits in the stored vector; saved in the index so queries match it."""

    blocks: list[Block]

    @property
    def dim(self) -> int:
        return sum(b.dim + 1 for b in self.blocks)

    def shifted(self, shifts: dict[str, float], text_shifts: dict[str, float]) -> Layout:
        """The same layout with chance levels moved (by projection heads): ``shifts`` for the
        blocks' own, ``text_shifts`` for a cross-modal block's text-to-image one."""
        blocks = []
        for block in self.blocks:
            text = block.unrelated_text_similarity
            blocks.append(
                block.model_copy(
                    update={
                        "unrelated_similarity": block.unrelated_similarity + shifts.get(block.name, 0.0),
                        "unrelated_text_similarity": None if text is None else text + text_shifts.get(block.name, 0.0),
                    }
                )
            )
        return Layout(blocks=blocks)

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for b in self.blocks:
            out[b.name] = slice(start, start + b.dim + 1)
            start += b.dim + 1
        return out

    def compose(
        self,
        parts: dict[str, np.ndarray | None],
        weights: dict[str, float] | None = None,
        from_text: frozenset[str] = frozenset(),
    ) -> np.ndarray:
        """One row. Item side: ``weights`` None, parts are unit vectors or None (absent).
        Query side: weights given, each present part scaled by its weight with the chance offset
        (for the blocks in ``from_text``, a text embedded into an image space, the text-image one)."""
        row = np.zeros(self.dim, dtype=np.float32)
        for block, where in zip(self.blocks, self.slices().values()):
            vector = parts.get(block.name)
            if vector is None:
                continue
            if weights is None:
                row[where.start : where.stop - 1] = vector
                row[where.stop - 1] = 1.0
            else:
                weight = weights.get(block.name, 0.0)
                row[where.start : where.stop - 1] = weight * vector
                cross = block.name in from_text and block.unrelated_text_similarity is not None
                row[where.stop - 1] = -weight * (
                    block.unrelated_text_similarity if cross else block.unrelated_similarity
                )
        return row

    def item_query(self, item: np.ndarray, like_image: bool = True) -> np.ndarray:
        """A query row made from a stored item row: as an image query of that item would be (its
        visual, caption and OCR embeddings), or as a text query (its caption embedding standing
        in for the query text). An item without a visual block is asked as text."""
        parts = {
            name: item[where.start : where.stop - 1] if item[where.stop - 1] > 0 else None
            for name, where in self.slices().items()
        }
        if like_image and parts.get("visual") is not None:
            return self.compose(parts, IMAGE_QUERY_WEIGHTS)  # an absent OCR block adds nothing
        return self.compose({"caption": parts.get("caption"), "text": parts.get("caption")}, TEXT_QUERY_WEIGHTS)

    def sample_queries(self, items: np.ndarray) -> np.ndarray:
        """Query rows shaped like real ones, made from stored item rows, for measuring recall:
        even rows as text queries, odd rows as image queries (``item_query``)."""
        return np.stack([self.item_query(item, like_image=number % 2 == 1) for number, item in enumerate(items)])

    def contributions(self, query: np.ndarray, items: np.ndarray) -> list[dict[str, float]]:
        """Each block's term of the score, for every row of ``items``."""
        terms = {name: items[:, where] @ query[where] for name, where in self.slices().items()}
        return [{name: round(float(terms[name][i]), 4) for name in terms} for i in range(len(items))]


def normalise_rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)
