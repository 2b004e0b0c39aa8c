"""MoAI-7B as the generator, when it is the index's backbone: the same loaded model reads each
candidate as MoAI reads any image, the picture plus the verbalized perception as auxiliary input,
and answers the rerank question; for an answer it looks at the best source's picture, with every
source's description in the question."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from indexer.errors import ImageError
from indexer.experts.base import Analysis
from indexer.images import load_image
from retriever.generative import GENERATORS
from retriever.generative.records import Candidate

RERANK_QUESTION = "Does this image match: {}? Answer Yes or No."
ANSWER_QUESTION = (
    "{question}\nAnswer only from the image and these photo notes, citing photos as [n]; "
    "if they do not answer it, say: not found in the collection.\n{notes}"
)


@GENERATORS.register("moai")
class MoAIGenerator:
    """Rerank and answers with the index's MoAI backbone (``indexer.encoders.moai``)."""

    name: ClassVar[str] = "moai"
    packages: ClassVar[tuple[str, ...]] = ("torch", "transformers", "safetensors", "sentencepiece")
    needs_checkpoint: ClassVar[bool] = True
    extra: ClassVar[str] = "checkpoints"

    def __init__(self, backbone) -> None:
        self.backbone = backbone
        self.version = backbone.version
        self._yes = backbone.tokenizer.word_ids("Yes")
        self._no = backbone.tokenizer.word_ids("No")

    def _analysis(self, candidate: Candidate) -> Analysis | None:
        """The candidate's picture with its stored perception (no expert runs again); None for a
        text item or a picture that is no longer readable."""
        if not candidate.image_path or not Path(candidate.image_path).is_file():
            return None
        try:
            analysis = Analysis.of(load_image(candidate.image_path))
        except ImageError:
            return None
        if candidate.perception is not None:
            analysis.perception = candidate.perception
        return analysis

    def judge(self, question: str, candidates: Sequence[Candidate]) -> list[float]:
        """P("Yes") per candidate, over the "Yes" and "No" first answer tokens."""
        scores = []
        for candidate in candidates:
            analysis = self._analysis(candidate)
            asked = RERANK_QUESTION.format(question)
            if analysis is None:  # no picture: MoAI reads the description instead
                asked = f"Photo description: {candidate.description}\n{asked}"
            probabilities = self.backbone.next_token_probabilities(asked, analysis)
            yes, no = float(probabilities[self._yes].sum()), float(probabilities[self._no].sum())
            scores.append(yes / (yes + no) if yes + no > 0 else 0.5)
        return scores

    def stream(
        self, question: str, sources: Sequence[Candidate], max_new_tokens: int = 128, deadline: float | None = None
    ) -> Iterator[str]:
        notes = "\n".join(f"[{n}] {source.description}" for n, source in enumerate(sources, start=1))
        pictured = next((a for a in map(self._analysis, sources) if a is not None), None)
        if deadline is not None and time.monotonic() >= deadline:
            return
        yield from self.backbone.stream(
            ANSWER_QUESTION.format(question=question, notes=notes), pictured, max_new_tokens, deadline
        )
