"""Perception experts (MoAI's external computer-vision models) and their registry.

To add an expert: one file defining a class with ``name``, ``version`` and ``run(analysis)``,
decorated with ``@EXPERTS.register("name")``, and one import line below. Experts run in
registration order; one that reads another's output lists it in ``needs``.
"""

from indexer.registry import Registry

EXPERTS: Registry = Registry("expert")

from indexer.experts import detection, tags, ocr, colors, relations  # noqa: E402,F401  (registers them)

DEFAULT_EXPERTS = ("detection", "tags", "ocr", "colors", "relations")
