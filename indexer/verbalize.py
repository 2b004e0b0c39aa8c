"""Verbalization: perception results put into words.

Two phrasings of the same facts:
- ``moai_prompt``: MoAI's auxiliary prompt, word for word (box format, headers, ", and " joining,
  the four parts segmentation / detection / scene graph / OCR joined by one space, an empty part
  being the empty string), so a MoAI model can read our experts' output as it reads its own.
- ``retrieval_text``: a short description for sentence embedders, where counts, relations, text
  and colours are plain words ("a photo of two dogs and a bicycle; a dog is left of the bicycle").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from indexer.lexicon import korean
from indexer.records import Box, Perception, Relation, Verbalization

VERSION = "moair-verbalize/3"  # change with any change to the phrasings (stored items become stale)

MOAI_BOXES_HEADER = "The image includes bounding box coordinates and their objects: "
MOAI_RELATIONS_HEADER = "The image includes relationships between objects: "
MOAI_TEXT_HEADER = "The image includes text descriptions: "
MOAI_JOIN = ", and "


def moai_box(box: Box) -> str:
    """``[0.00, 0.10, 0.50, 0.90]``: each coordinate rounded to two decimals."""
    return "[" + ", ".join(f"{round(v, 2):.2f}" for v in box) + "]"


def _moai_part(header: str, items: Sequence[str]) -> str:
    return header + MOAI_JOIN.join(items) + "." if items else ""


def moai_boxes_part(labelled_boxes: Sequence[tuple[str, Box]]) -> str:
    """MoAI's segmentation/detection part: ``[x0, y0, x1, y1] label`` items."""
    return _moai_part(MOAI_BOXES_HEADER, [f"{moai_box(box)} {label}" for label, box in labelled_boxes])


def moai_relations_part(relations: Sequence[Relation]) -> str:
    return _moai_part(MOAI_RELATIONS_HEADER, [f"{r.subject} is {r.predicate} {r.object}" for r in relations])


def moai_text_part(lines: Sequence[str]) -> str:
    return _moai_part(MOAI_TEXT_HEADER, list(lines))


def strip_panoptic_suffix(label: str) -> str:
    """COCO panoptic names drop ``-merged``, ``-other`` and ``-stuff`` in MoAI's prompts."""
    return label.replace("-merged", "").replace("-other", "").replace("-stuff", "")


def moai_prompt(perception: Perception) -> str:
    """MoAI's auxiliary prompt: segmentation, detection, scene graph and OCR parts joined by one space."""
    return " ".join(
        [
            moai_boxes_part([(strip_panoptic_suffix(s.label), s.box) for s in perception.segments]),
            moai_boxes_part([(d.label, d.box) for d in perception.detections]),
            moai_relations_part(perception.relations),
            moai_text_part([line.text for line in perception.text]),
        ]
    )


NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
IRREGULAR_PLURALS = {
    "person": "people",
    "mouse": "mice",
    "knife": "knives",
    "sheep": "sheep",
    "skis": "skis",
    "scissors": "scissors",
    "bus": "buses",
    "wine glass": "wine glasses",
    "couch": "couches",
    "sandwich": "sandwiches",
    "toothbrush": "toothbrushes",
    "bench": "benches",
    "hair drier": "hair driers",
}
_NUMBER_SUFFIX = re.compile(r" \(#\d+\)$")


def without_number(name: str) -> str:
    """MoAI's numbered name back to the label: 'horse (#2)' -> 'horse'."""
    return _NUMBER_SUFFIX.sub("", name)


def plural(noun: str) -> str:
    return IRREGULAR_PLURALS.get(noun, noun + "es" if noun.endswith(("s", "x", "ch", "sh")) else noun + "s")


def article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def count_phrase(noun: str, count: int) -> str:
    """``a dog``, ``two dogs``, ``12 people``."""
    if count == 1:
        return article(noun)
    return f"{NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else count} {plural(noun)}"


def join_words(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def relation_phrase(relation: Relation) -> str:
    subject = without_number(relation.subject)
    obj = without_number(relation.object)
    target = f"another {obj}" if obj == subject else f"the {obj}"
    return f"{article(subject)} is {relation.predicate} {target}"


def retrieval_text(perception: Perception) -> str:
    """A description for sentence embedders: objects with counts, relations, text, colours, tags."""
    clauses = []
    counts = Counter(d.label for d in perception.detections)
    medium = article(perception.medium or "photo")
    if counts:
        clauses.append(f"{medium} of " + join_words([count_phrase(label, n) for label, n in counts.items()]))
    else:
        clauses.append(medium)
    clauses.extend(relation_phrase(r) for r in perception.relations[:4])
    if perception.text:
        clauses.append("the text reads " + join_words([f"'{line.text}'" for line in perception.text[:6]]))
    if perception.colors:
        clauses.append("mostly " + join_words([c.name for c in perception.colors]))
    if perception.tags:
        clauses.append(
            "it may show "
            + join_words([article(t.label) + (f" ({t.kind})" if t.kind else "") for t in perception.tags])
        )
    return "; ".join(clauses)


def korean_caption(perception: Perception) -> str:
    """The retrieval description's Korean clause: objects with counters, relations, colours, tags."""
    clauses = []
    counts = Counter(d.label for d in perception.detections)
    medium = korean.MEDIUM_KO.get(perception.medium or "photo", "사진")
    if counts:
        clauses.append(f"{medium} 속 " + ", ".join(korean.counted(label, n) for label, n in counts.items()))
    elif medium != "사진":
        clauses.append(medium)
    clauses.extend(
        korean.relation_ko(without_number(r.subject), r.predicate, without_number(r.object))
        for r in perception.relations[:4]
    )
    if perception.colors:
        clauses.append("색 " + ", ".join(korean.COLOR_KO.get(c.name, c.name) for c in perception.colors))
    tags = [korean.imagenet_ko().get(t.label) for t in perception.tags]
    if any(tags):
        clauses.append("보이는 것 " + ", ".join(t for t in tags if t))
    return "; ".join(clauses)


def verbalize(perception: Perception) -> Verbalization:
    return Verbalization(
        moai=moai_prompt(perception),
        retrieval=retrieval_text(perception),
        retrieval_ko=korean_caption(perception),
        text="; ".join(line.text for line in perception.text),
    )
