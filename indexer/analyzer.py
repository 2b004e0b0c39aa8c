"""The models of one index: perception experts, the text embedder and the visual backbone, as an
``Analyzer`` that turns a decoded image (or an entry's text) into perception, verbalization and
the embedding of each block. It also records what it is made of (``index_config``), rebuilds the
models an existing index was made with (``for_index``), and checks each model on a small image
before any work starts (``require_working_models``)."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from indexer.encoders import BACKBONES, DEFAULT_BACKBONE, DEFAULT_TEXT_EMBEDDER, TEXT_EMBEDDERS
from indexer.encoders.base import Backbone, BuiltFromCheckpoint, TextEmbedder
from indexer.errors import MoairError
from indexer.experts import DEFAULT_EXPERTS, EXPERTS, run_order
from indexer.experts.base import Analysis
from indexer.images import LoadedImage
from indexer.mixture import Block, Layout, normalise_rows
from indexer.model_check import ModelCheck, ModelError, check, failed_check, first_failure, smoke_image, vectors
from indexer.packaged_models import INDEX_WORKERS, make_worker_thread
from indexer.records import Verbalization
from indexer.store import IndexConfig, PluginSpec
from indexer.verbalize import VERSION as VERBALIZATION_VERSION
from indexer.verbalize import verbalize

CHECK_TEXT = "a photo of a dog next to a red car"  # what the start-up check embeds


@functools.cache
def worker_pool() -> ThreadPoolExecutor:
    """The indexing workers, kept for the life of the process so each loads its models once."""
    return ThreadPoolExecutor(INDEX_WORKERS, thread_name_prefix="moair-index", initializer=make_worker_thread)


class Analyzer:
    """Experts + encoders: turns a decoded image into perception, verbalization and vector parts."""

    def __init__(
        self,
        experts: Sequence[str] = DEFAULT_EXPERTS,
        text_embedder: str = DEFAULT_TEXT_EMBEDDER,
        backbone: str = DEFAULT_BACKBONE,
        backbone_options: dict[str, str] | None = None,
        expert_options: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """``backbone_options`` go to a backbone built from a checkpoint, ``expert_options[name]``
        to such an expert: ``checkpoint`` (folder), ``device`` (auto, cpu, cuda) and ``dtype``
        (auto, float32, float16, bfloat16). Experts run in ``run_order``: the registry's order,
        each after those whose output it reads. A name is a registered one or, for a plug-in from
        another package, ``package.module:Class``."""
        order = run_order(experts)
        self.experts = [_create("expert", EXPERTS, name, **(expert_options or {}).get(name, {})) for name in order]
        self._names = (text_embedder, backbone, order)  # what the index records: a plug-in's name may differ
        self.text_embedder: TextEmbedder = _create("text embedder", TEXT_EMBEDDERS, text_embedder)
        self.backbone: Backbone = _create("backbone", BACKBONES, backbone, **(backbone_options or {}))
        self._models_work = False

    @classmethod
    def for_index(cls, config: IndexConfig, device: str = "auto", dtype: str = "auto") -> Analyzer:
        """The models an index was built with; a checkpoint backbone must be the same checkpoint."""
        runtime = {"device": device, "dtype": dtype}
        backbone = config.backbone
        analyzer = cls(
            experts=[expert.name for expert in config.experts],
            text_embedder=config.text_embedder.name,
            backbone=backbone.name,
            backbone_options={**backbone.options, **runtime} if backbone.options else None,
            expert_options={e.name: {**e.options, **runtime} for e in config.experts if e.options},
        )
        found = analyzer.backbone.version
        if backbone.options and found != backbone.version:  # a packaged model's new version: items are stale
            raise MoairError(
                f"this index was built with the {backbone.name} backbone {backbone.version} from "
                f"{backbone.options.get('checkpoint', '')}, but that checkpoint is now {found}: its queries would "
                "not match the stored vectors; put the original checkpoint back, or build a new index"
            )
        return analyzer

    def index_config(self) -> IndexConfig:
        text, visual = self.text_embedder, self.backbone
        layout = Layout(
            blocks=[
                Block(name="caption", dim=text.dim, unrelated_similarity=text.unrelated_similarity),
                Block(name="text", dim=text.dim, unrelated_similarity=text.unrelated_similarity),
                Block(
                    name="visual",
                    dim=visual.dim,
                    unrelated_similarity=visual.unrelated_similarity,
                    unrelated_text_similarity=visual.unrelated_text_similarity if visual.cross_modal else None,
                ),
            ]
        )
        text_name, backbone_name, expert_names = self._names
        return IndexConfig(
            text_embedder=plugin_spec(text_name, text),
            backbone=plugin_spec(backbone_name, visual),
            experts=[plugin_spec(name, expert) for name, expert in zip(expert_names, self.experts)],
            layout=layout,
            created_at=time.time(),
        )

    def versions(self) -> dict[str, str]:
        """The version of every expert, the verbalization and both encoders: an item analysed by
        other versions is stale."""
        versions = {e.name: e.version for e in self.experts}
        versions["verbalization"] = VERBALIZATION_VERSION
        versions["text_embedder"] = f"{self.text_embedder.name}/{self.text_embedder.version}"
        versions["backbone"] = f"{self.backbone.name}/{self.backbone.version}"
        return versions

    def check_models(self) -> list[ModelCheck]:
        """Load every expert and encoder and run it once: the experts on a small image, the text
        embedder on a sentence, the backbone on the image (and the sentence, when it is
        cross-modal); an encoder must give finite unit vectors of its size. Called in an indexing
        worker, it loads that worker's own copies, which it then keeps."""
        analysis = Analysis.of(smoke_image())
        results = [check("expert", e.name, e, functools.partial(e.run, analysis)) for e in self.experts]
        text, backbone = self.text_embedder, self.backbone

        def embed_text() -> None:
            vectors(text.embed_passages([CHECK_TEXT]), 1, text.dim)
            vectors(text.embed_queries([CHECK_TEXT]), 1, text.dim)

        def embed_image() -> None:
            vectors(backbone.embed([analysis]), 1, backbone.dim)
            if backbone.cross_modal:
                vectors(backbone.embed_texts([CHECK_TEXT]), 1, backbone.dim)

        results.append(check("text embedder", text.name, text, embed_text))
        results.append(check("backbone", backbone.name, backbone, embed_image))
        return results

    def require_working_models(self) -> None:
        """Raise ``ModelError`` for the first model that cannot load or run (checked once, before
        any file is read, in every indexing worker at the same time: each loads its own copies, as
        it would for its first file)."""
        if self._models_work:
            return
        together = threading.Barrier(INDEX_WORKERS)

        def check_in_this_worker() -> list[ModelCheck]:
            try:
                return self.check_models()
            finally:
                with contextlib.suppress(threading.BrokenBarrierError):
                    together.wait(timeout=600)  # one check per worker: none takes a second one

        for checks in [f.result() for f in [worker_pool().submit(check_in_this_worker) for _ in range(INDEX_WORKERS)]]:
            first_failure(checks)
        self._models_work = True

    def analyze(self, image: LoadedImage) -> Analysis:
        analysis = Analysis.of(image)
        for expert in self.experts:
            expert.run(analysis)
        return analysis

    def caption(self, verbalization: Verbalization) -> str:
        """What the caption block embeds: the text that came with the item, the retrieval
        description, and for a multilingual text embedder the same in Korean (an English-only one
        reads Korean as noise)."""
        lines = [verbalization.given_text, verbalization.retrieval]
        if self.text_embedder.multilingual:
            lines.append(verbalization.retrieval_ko)
        return "\n".join(line for line in lines if line)

    def describe(
        self, analysis: Analysis | None, given_text: str = ""
    ) -> tuple[Verbalization, dict[str, np.ndarray | None]]:
        """The verbalization and per-block unit vectors of one item: an analysed image, a given
        text, or both. A block the item lacks is None."""
        verbalization = verbalize(analysis.perception) if analysis else Verbalization(moai="", retrieval="")
        verbalization.given_text = given_text
        embed = self.text_embedder.embed_passages
        parts: dict[str, np.ndarray | None] = {
            "caption": normalise_rows(embed([self.caption(verbalization)])[0]),
            "text": embed([verbalization.text])[0] if verbalization.text else None,
            "visual": self.backbone.embed([analysis])[0] if analysis else None,
        }
        return verbalization, parts


def plugin_spec(name: str, plugin) -> PluginSpec:
    """How the index records ``plugin``, created as ``name``: a checkpoint model's ``options()``
    build it again."""
    options = plugin.options() if isinstance(plugin, BuiltFromCheckpoint) else {}
    return PluginSpec(name=name, options=options, version=plugin.version)


def _create(kind, registry, name: str, **options):
    """A plug-in from its registry; a failure that is not already a message for the user (an
    import error, say) becomes a ``ModelError`` naming the plug-in and its packages."""
    try:
        return registry.create(name, **options)
    except MoairError:
        raise
    except Exception as e:
        raise ModelError(failed_check(kind, name, registry.get(name), e)) from e
