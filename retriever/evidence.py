"""Matched evidence: which perceived facts of a hit the query asked about, in plain words."""

from __future__ import annotations

import re
from collections import Counter

from indexer.records import ItemRecord, Perception
from indexer.verbalize import IRREGULAR_PLURALS, count_phrase, relation_phrase

_WORD = re.compile(r"\w+(?:'\w+)*", re.UNICODE)  # "don't" is one word; quotes around a word are not part of it
_SINGULAR = {p: s for s, p in IRREGULAR_PLURALS.items()}
_STOPWORDS = {"the", "and", "that", "this", "with", "for", "are", "was", "has", "have", "says", "say", "photo", "image", "picture", "of", "on", "in", "a", "an", "is", "it", "to"}


def _words(text: str) -> set[str]:
    words = set()
    for w in _WORD.findall(text.lower()):
        if w in _STOPWORDS or len(w) < 2:
            continue
        words.add(w)
        words.add(_SINGULAR.get(w, w[:-2] if w.endswith("es") and len(w) > 4 else w[:-1] if w.endswith("s") else w))
    return words


def _mentions(words: set[str], label: str) -> bool:
    return bool(words & set(label.lower().split()))


def evidence(item: ItemRecord, query_text: str | None, query_perception: Perception | None = None, limit: int = 6) -> list[str]:
    """Facts of ``item`` that the query mentions (or, for an image query, shares); when none
    match, the item's main facts, so a hit always says what it shows."""
    p = item.perception
    words = _words(query_text or "")
    query_labels = {d.label for d in query_perception.detections} if query_perception else set()
    counts = Counter(d.label for d in p.detections)
    matched = [count_phrase(label, n) for label, n in counts.items() if _mentions(words, label) or label in query_labels]
    matched += [f"{relation_phrase(r)}" for r in p.relations if _mentions(words, r.subject) and _mentions(words, r.object)]
    quoted_or_words = (query_text or "").lower()
    matched += [
        f"text '{line.text}'" for line in p.text if line.text.lower() in quoted_or_words or _words(line.text) & words
    ]
    matched += [f"{c.name} ({c.fraction:.0%})" for c in p.colors if c.name in words]
    matched += [f"looks like {t.label}" for t in p.tags if _mentions(words, t.label)]
    if matched:
        return list(dict.fromkeys(matched))[:limit]
    summary = [count_phrase(label, n) for label, n in counts.most_common(3)]
    summary += [f"text '{line.text}'" for line in p.text[:2]]
    summary += [f"looks like {t.label}" for t in p.tags[:1]]
    summary += [f"mostly {c.name}" for c in p.colors[:1]]
    return summary[:limit]
