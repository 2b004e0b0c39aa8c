"""Search side of moair: the ``Engine`` API, query gating and matched evidence."""

from indexer.errors import DamagedIndex, Locked, MoairError, NotFound
from indexer.records import ItemRecord, SearchHit
from retriever.doctor import check_install
from retriever.engine import Engine

__all__ = ["DamagedIndex", "Engine", "ItemRecord", "Locked", "MoairError", "NotFound", "SearchHit", "check_install"]
