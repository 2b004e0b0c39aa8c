"""A query, from what the caller asked to one composed row.

``SearchRequest`` holds a search as asked and checks it: the one set of limits and messages that
the Python API applies and that the CLI's options and the HTTP schemas are bounded by.
``QueryEncoder`` turns a request into a ``ComposedQuery``: an instruction ("find a photo of ...")
is taken out of the text and steers the modality, a query image is analysed (a picture that is
mostly writing is matched by what it says), the gate weighs the blocks, each block is embedded
(recent query texts from a cache), projected through the index's heads and composed into the row.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import get_args

import numpy as np

from indexer.analyzer import Analyzer
from indexer.encoders.base import ComposingBackbone
from indexer.errors import ImageError, MoairError
from indexer.images import load_image
from indexer.records import Modality, Perception
from indexer.store import Store
from indexer.verbalize import verbalize
from retriever.gate import gate
from retriever.queries import mostly_text, parse_query

MAX_K = 1000
MAX_RERANK = 100  # hits a generator re-scores at most
MAX_ASK_K = 50  # items an answer is written from at most
MAX_BUDGET = 3600.0  # seconds
DEFAULT_ASK_BUDGET = 60.0
MODALITIES = get_args(Modality)
QUERY_EMBEDDINGS_CACHED = 256  # recent query texts: the next page of a search does not embed it again


def check_budget(seconds: float | None) -> None:
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_BUDGET
    ):
        raise MoairError(f"time_budget must be a number of seconds above 0 and at most {MAX_BUDGET}, got {seconds!r}")


@dataclass(frozen=True)
class SearchRequest:
    """One search, checked when made (``MoairError`` with what is wrong); the text comes stripped."""

    text: str | None = None
    image: str | os.PathLike | bytes | None = None
    k: int = 10
    modality: Modality | None = None
    min_score: float | None = None
    max_drop: float | None = None
    rerank: int = 0
    time_budget: float | None = None

    def __post_init__(self) -> None:
        text = self.text
        if text is not None and not isinstance(text, str):
            raise MoairError(f"query text must be a string, not {type(text).__name__}")
        object.__setattr__(self, "text", text.strip() if text else None)
        if not self.text and self.image is None:
            raise MoairError("give a text query, an image query, or both")
        k = self.k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise MoairError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}")
        if self.modality is not None and self.modality not in MODALITIES:
            raise MoairError(f"modality must be one of {', '.join(MODALITIES)}, got {self.modality!r}")
        for name, value in (("min_score", self.min_score), ("max_drop", self.max_drop)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            ):
                raise MoairError(f"{name} must be a number, got {value!r}")
        if self.max_drop is not None and self.max_drop < 0:
            raise MoairError(f"max_drop must be 0 or more, got {self.max_drop!r}")
        rerank = self.rerank
        if isinstance(rerank, bool) or not isinstance(rerank, int) or not 0 <= rerank <= MAX_RERANK:
            raise MoairError(f"rerank must be a whole number from 0 to {MAX_RERANK}, got {rerank!r}")
        if rerank and not self.text:
            raise MoairError("rerank needs a text query (the generator is asked whether each hit matches it)")
        check_budget(self.time_budget)


@dataclass
class ComposedQuery:
    """A request as one row of the index's layout, with what the hits are explained by."""

    row: np.ndarray
    text: str | None  # the text matched (the instruction taken out; a picture's writing)
    perception: Perception | None  # of the query image, when it is searched as an image
    modality: Modality | None  # as asked, or as the instruction wants
    reference: int | None  # the item a composed query's image is (left out of the hits: CIRR does)


class QueryEncoder:
    """Requests to rows with the models an index was built with (its ``Analyzer``)."""

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        self._embedding = functools.lru_cache(maxsize=QUERY_EMBEDDINGS_CACHED)(self._embed)

    def _embed(self, text: str) -> np.ndarray:
        vector = self.analyzer.text_embedder.embed_queries([text])[0]
        vector.flags.writeable = False  # shared by every search that asks the same text
        return vector

    def encode(self, request: SearchRequest, store: Store) -> ComposedQuery:
        parsed = parse_query(
            request.text, has_image=request.image is not None
        )  # an instruction steers; it is not matched
        text, modality = parsed.text, request.modality
        if request.rerank and not text:
            raise MoairError("rerank needs a text to match besides the instruction")
        if modality is None and parsed.wants and store.catalog.holds(parsed.wants):
            modality = parsed.wants
        analysis = None
        if request.image is not None:
            try:
                analysis = self.analyzer.analyze(load_image(request.image))
            except ImageError as e:
                raise MoairError(f"query image: {e}") from None
        verbal = verbalize(analysis.perception) if analysis else None
        reference = None
        if analysis is not None and text:
            reference = store.catalog.item_id_for_hash(analysis.image.content_hash)
        elif analysis is not None and mostly_text(analysis.perception):
            text = verbal.text  # a picture of a sentence is matched by what it says (E5-V's trick)
            analysis, verbal = None, None
        backbone = self.analyzer.backbone
        decision = gate(
            text,
            has_image=analysis is not None,
            image_has_text=bool(verbal and verbal.text),
            text_reaches_visual=backbone.cross_modal,
        )
        wanted = {"caption": text or self.analyzer.caption(verbal)}
        if decision.weights["text"] > 0:
            wanted["text"] = decision.text_for_ocr or (verbal.text if verbal else "")
        parts: dict[str, np.ndarray | None] = {name: self._embedding(query) for name, query in wanted.items()}
        if analysis is not None and text and isinstance(backbone, ComposingBackbone):  # "this image, but ..."
            parts["visual"] = backbone.embed_composed(analysis, text)
        else:
            parts["visual"] = backbone.embed([analysis])[0] if analysis else None
        from_text = frozenset()
        if analysis is None and decision.weights["visual"] > 0:  # a text query into the image space
            parts["visual"], from_text = backbone.embed_texts([text])[0], frozenset({"visual"})
        row = store.query_layout.compose(store.project_parts(parts), decision.weights, from_text)
        return ComposedQuery(row, text, analysis.perception if analysis else None, modality, reference)
