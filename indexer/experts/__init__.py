"""Perception experts (MoAI's external computer-vision models) and their registry.

To add an expert: one file defining a class with ``name``, ``version`` and ``run(analysis)``,
decorated with ``@EXPERTS.register("name")``, and one import line below. Experts run in
registration order (the import order below), so one that reads another's output comes after it.
An expert loaded from a user's checkpoint (``owlv2``, ``panoptic``) takes ``checkpoint``,
``device`` and ``dtype`` and has ``options()``, what the index records to build it again.
"""

from indexer.registry import Registry

EXPERTS: Registry = Registry("expert")

from indexer.experts import detection, owlv2, panoptic, tags, ocr, hangul, colors, medium, relations  # noqa: E402,F401  (registers them)

DEFAULT_EXPERTS = ("detection", "tags", "ocr", "hangul", "colors", "medium", "relations")
