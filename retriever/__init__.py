"""Search side of moair: the ``Engine`` API, query gating and matched evidence."""

from indexer.errors import MoairError
from indexer.records import ItemRecord, SearchHit
from retriever.doctor import check_install
from retriever.engine import Engine

__all__ = ["Engine", "SearchHit", "ItemRecord", "MoairError", "check_install"]
