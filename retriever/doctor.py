"""The state of an install (``moair doctor``): every model moair can use, the versions of the
packages it stands on, and whether it loads and runs.

Without an index: the default models are loaded and run as an index run would check them, the
other packaged models too; models that need a checkpoint folder are listed with their packages
(``--index`` checks an index built with them). The generator is loaded only when asked, since
Gemma's first load converts it (1-2 minutes).
"""

from __future__ import annotations

import functools
from pathlib import Path

from indexer.analyzer import CHECK_TEXT, Analyzer
from indexer.encoders import BACKBONES, TEXT_EMBEDDERS
from indexer.experts import EXPERTS
from indexer.experts.base import Analysis
from indexer.model_check import ModelCheck, ModelError, check, not_checked, optional_missing, smoke_image, vectors
from retriever.engine import GENERATOR_LOADS_LATER, Engine
from retriever.generative import GENERATORS
from retriever.generative.records import Candidate

NEEDS_CHECKPOINT = "needs a checkpoint folder; `moair doctor --index INDEX` checks an index built with one"


def check_install(index: str | Path | None = None, generator: bool = False) -> list[ModelCheck]:
    """One ``ModelCheck`` per model: an index's models (``index``), or every model of the install."""
    if index is not None:
        try:
            with Engine.open(index) as engine:
                return engine.check_models(generator=generator)
        except ModelError as e:
            return [e.check]
    packaged_experts = [name for name in EXPERTS.names() if not _needs_checkpoint(EXPERTS.get(name))]
    try:
        results = Analyzer(experts=packaged_experts).check_models()
    except ModelError as e:
        results = [e.check]
    checked = {(r.kind, r.name) for r in results}
    for kind, registry in (
        ("expert", EXPERTS),
        ("text embedder", TEXT_EMBEDDERS),
        ("backbone", BACKBONES),
        ("generator", GENERATORS),
    ):
        for name in registry.names():
            plugin = registry.get(name)
            if (kind, name) in checked:
                continue
            if _needs_checkpoint(plugin):
                results.append(not_checked(kind, name, plugin, NEEDS_CHECKPOINT))
            elif optional_missing(plugin):
                results.append(not_checked(kind, name, plugin, ""))
            elif kind == "generator" and not generator:
                results.append(not_checked(kind, name, plugin, GENERATOR_LOADS_LATER))
            else:
                results.append(check(kind, name, plugin, functools.partial(RUN_ONCE[kind], registry, name)))
    return results


def _needs_checkpoint(plugin: object) -> bool:
    return bool(getattr(plugin, "needs_checkpoint", False))


def _embed_text(registry, name: str) -> None:
    embedder = registry.create(name)
    vectors(embedder.embed_queries([CHECK_TEXT]), 1, embedder.dim)
    vectors(embedder.embed_passages([CHECK_TEXT]), 1, embedder.dim)


def _embed_image(registry, name: str) -> None:
    backbone = registry.create(name)
    vectors(backbone.embed([Analysis.of(smoke_image())]), 1, backbone.dim)


def _perceive(registry, name: str) -> None:
    registry.create(name).run(Analysis.of(smoke_image()))


def _judge(registry, name: str) -> None:
    registry.create(name).judge(CHECK_TEXT, [Candidate(0, CHECK_TEXT)])


RUN_ONCE = {"expert": _perceive, "text embedder": _embed_text, "backbone": _embed_image, "generator": _judge}
