"""A scene-graph stand-in: spatial relations between detected objects, read off box geometry.

MoAI's scene-graph expert (PSGTR) needs a checkpoint; this one derives "left of", "right of",
"above", "below", "on", "in" and "next to" from the detector's boxes, names repeated objects
with MoAI's " (#n)" suffix, and keeps at most 10 relations, as MoAI does.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import ClassVar

from indexer.experts import EXPERTS
from indexer.experts.base import Analysis
from indexer.records import Box, Relation

MAX_OBJECTS = 6
MAX_RELATIONS = 10


def number_duplicates(labels: list[str]) -> list[str]:
    """MoAI's naming: a label that occurs more than once gets " (#1)", " (#2)", ... in order."""
    totals = Counter(labels)
    seen: Counter[str] = Counter()
    named = []
    for label in labels:
        if totals[label] > 1:
            seen[label] += 1
            named.append(f"{label} (#{seen[label]})")
        else:
            named.append(label)
    return named


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def spatial_predicate(a: Box, b: Box) -> str:
    """How box ``a`` (subject) relates to box ``b`` (object)."""
    area_a, area_b = _area(a), _area(b)
    inter = _overlap(a[0], a[2], b[0], b[2]) * _overlap(a[1], a[3], b[1], b[3])
    x_overlap = _overlap(a[0], a[2], b[0], b[2]) / max(1e-6, min(a[2] - a[0], b[2] - b[0]))
    if area_a < area_b and inter >= 0.8 * area_a:
        centre_y = (a[1] + a[3]) / 2
        return "on" if centre_y < (b[1] + b[3]) / 2 and a[3] < b[3] else "in"
    if x_overlap > 0.5 and a[3] <= (b[1] + b[3]) / 2 and a[3] >= b[1] - 0.05 and area_a < area_b:
        return "on"
    dx = (a[0] + a[2]) / 2 - (b[0] + b[2]) / 2
    dy = (a[1] + a[3]) / 2 - (b[1] + b[3]) / 2
    if abs(dx) < 0.05 and abs(dy) < 0.05:
        return "next to"
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


@EXPERTS.register("relations")
class GeometricRelations:
    name: ClassVar[str] = "relations"
    version: ClassVar[str] = "box-geometry/1"
    reads: ClassVar[tuple[str, ...]] = ("detections",)
    writes: ClassVar[tuple[str, ...]] = ("relations",)
    packages: ClassVar[tuple[str, ...]] = ()

    def run(self, analysis: Analysis) -> None:
        objects = analysis.perception.detections[:MAX_OBJECTS]
        names = number_duplicates([d.label for d in objects])
        pairs = sorted(combinations(range(len(objects)), 2), key=lambda p: -objects[p[0]].score * objects[p[1]].score)
        relations = []
        for i, j in pairs:
            # Describe the smaller object relative to the larger one ("person on horse").
            s, o = (i, j) if _area(objects[i].box) <= _area(objects[j].box) else (j, i)
            predicate = spatial_predicate(objects[s].box, objects[o].box)
            relations.append(Relation(subject=names[s], predicate=predicate, object=names[o]))
            if len(relations) == MAX_RELATIONS:
                break
        analysis.perception.relations = relations
