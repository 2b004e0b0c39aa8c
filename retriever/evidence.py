"""Matched evidence: which perceived facts of a hit the query asked about, in plain words."""

from __future__ import annotations

import re
from collections import Counter

from indexer.lexicon import korean
from indexer.records import ItemRecord, Perception
from indexer.verbalize import IRREGULAR_PLURALS, count_phrase, relation_phrase

_WORD = re.compile(r"\w+(?:'\w+)*", re.UNICODE)  # "don't" is one word; quotes around a word are not part of it
_SINGULAR = {p: s for s, p in IRREGULAR_PLURALS.items()}
_STOPWORDS = {
    "the",
    "and",
    "that",
    "this",
    "with",
    "for",
    "are",
    "was",
    "has",
    "have",
    "says",
    "say",
    "photo",
    "image",
    "picture",
    "of",
    "on",
    "in",
    "a",
    "an",
    "is",
    "it",
    "to",
}


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


_KOREAN_PARTICLES = "이가을를은는과와도의에로들"


def _mentions_in_korean(query: str, korean_name: str | None) -> bool:
    """Korean attaches particles to nouns (개가, 자전거를): a name matches at the start of a query
    word; a one-syllable name (개, 말, 연) only alone or before a particle, so 말 is not 말하는."""
    for word in (korean_name or "").split():
        tail = "" if len(word) > 1 else f"(?:[{_KOREAN_PARTICLES}]|(?![가-힣]))"
        if re.search(rf"(?<![가-힣]){re.escape(word)}{tail}", query):
            return True
    return False


def evidence(
    item: ItemRecord, query_text: str | None, query_perception: Perception | None = None, limit: int = 6
) -> list[str]:
    """Facts of ``item`` that the query mentions (or, for an image query, shares); when none
    match, the item's main facts, so a hit always says what it shows."""
    p = item.perception
    words = _words(query_text or "")
    query_labels = {d.label for d in query_perception.detections} if query_perception else set()
    counts = Counter(d.label for d in p.detections)
    query = query_text or ""
    matched = [
        count_phrase(label, n)
        for label, n in counts.items()
        if _mentions(words, label) or label in query_labels or _mentions_in_korean(query, korean.COCO_KO.get(label))
    ]
    matched += [
        f"{relation_phrase(r)}" for r in p.relations if _mentions(words, r.subject) and _mentions(words, r.object)
    ]
    matched += [
        f"text '{line.text}'" for line in p.text if line.text.lower() in query.lower() or _words(line.text) & words
    ]
    matched += [f"{c.name} ({c.fraction:.0%})" for c in p.colors if c.name in words]
    matched += [
        f"looks like {t.label}"
        for t in p.tags
        if _mentions(words, t.label) or _mentions_in_korean(query, korean.imagenet_ko().get(t.label))
    ]
    if matched:
        return list(dict.fromkeys(matched))[:limit]
    summary = [count_phrase(label, n) for label, n in counts.most_common(3)]
    summary += [f"text '{line.text}'" for line in p.text[:2]]
    summary += [f"looks like {t.label}" for t in p.tags[:1]]
    summary += [f"mostly {c.name}" for c in p.colors[:1]]
    return summary[:limit]
