"""Generative models over retrieved items: rerank (P("Yes") that an item matches the query) and
answers grounded in the items (``moair ask``).

A generator is a plug-in in ``GENERATORS`` (one file, one import line below) that is a
``Generator`` (``retriever.generative.records``). What each model reads of a candidate (its
verbalization, its image, both) is the plug-in's choice.
"""

from indexer.registry import Registry

GENERATORS: Registry = Registry("generator")

from retriever.generative import gemma, moai  # noqa: E402,F401  (registers them)
