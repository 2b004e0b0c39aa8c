"""Chance levels: each encoder's typical cosine between unrelated inputs, which the mixture
subtracts so that a block scores 0 at chance (``indexer.mixture``). One table, each number with
where it comes from; ``benchmarks/bench_chance.py`` measures the packaged models' again.

A measured level is the median over the unrelated pairs of moair's 20 sample photos (every pair
of different photos; for a text embedder, one photo's retrieval verbalization embedded as a query
against another's as a passage). A checkpoint model cannot be measured here (no published weights
install offline), so its level is an estimate for the published checkpoints of its family.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChanceLevel:
    similarity: float  # within the block's own kind: query -> passage, image -> image
    text_similarity: float | None  # text -> image, for a backbone with a text tower
    provenance: str


CHANCE_LEVELS: dict[str, ChanceLevel] = {
    "e5-small": ChanceLevel(0.80, None, "measured: query -> passage, sample photos"),
    "minilm": ChanceLevel(0.10, None, "measured: query -> passage, sample photos"),
    "efficientnet-lite3": ChanceLevel(0.45, None, "measured: image -> image, sample photos"),
    "clip": ChanceLevel(0.45, 0.18, "estimate for published CLIP checkpoints"),
    "siglip": ChanceLevel(0.35, 0.0, "estimate: SigLIP's sigmoid-trained towers sit lower than CLIP's"),
    "e5v": ChanceLevel(0.5, 0.3, "estimate for E5-V (LLaVA-NeXT-8B)"),
    "moai": ChanceLevel(0.5, 0.3, "estimate, as for E5-V (a 7B vision-language model's last-token state)"),
}
