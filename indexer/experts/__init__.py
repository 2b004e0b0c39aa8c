"""Perception experts (MoAI's external computer-vision models) and their registry.

To add an expert: one file defining a class with ``name``, ``version``, ``reads``, ``writes`` and
``run(analysis)``, decorated with ``@EXPERTS.register("name")``, and one import line below.
Experts run in registration order, and ``run_order`` puts one after those whose output it reads.
An expert loaded from a user's checkpoint (``owlv2``, ``panoptic``) takes ``checkpoint``,
``device`` and ``dtype`` and has ``options()``, what the index records to build it again.
"""

from collections.abc import Sequence

from indexer.errors import MoairError
from indexer.records import Perception
from indexer.registry import Registry

EXPERTS: Registry = Registry("expert")

# not sorted: the registry lists plug-ins in the order they register (detectors first, as `moair doctor` shows them)
from indexer.experts import detection, owlv2, panoptic, tags, ocr, hangul, colors, medium, relations  # noqa: E402,F401,I001

DEFAULT_EXPERTS = ("detection", "tags", "ocr", "hangul", "colors", "medium", "relations")


def run_order(names: Sequence[str], registry: Registry = EXPERTS) -> list[str]:
    """The experts ``names`` in the order they run: the order they registered in, except that one
    that reads a perception field runs after each chosen expert that fills it (the COCO detector
    before OWLv2, which adds to its boxes, and both before relations, which reads them). Two
    experts that both read and fill a field keep the registry's order; experts from other
    packages (``package.module:Class``) come after the registered ones, in the order given."""
    position = {name: n for n, name in enumerate(registry.names())}  # other packages' experts come last
    classes = {name: registry.get(name) for name in dict.fromkeys(names)}  # unknown: the registry's message
    chosen = sorted(classes, key=lambda name: position.get(name, len(position)))
    for name, cls in classes.items():
        unknown = sorted(set(cls.reads + cls.writes) - set(Perception.model_fields))
        if unknown:
            raise MoairError(f"expert {name!r} declares fields a Perception does not have: {', '.join(unknown)}")

    def runs_before(first: str, then: str) -> bool:
        a, b = classes[first], classes[then]
        return any(not (field in a.reads and field in b.writes) for field in set(a.writes) & set(b.reads))

    order: list[str] = []
    waiting = chosen
    while waiting:
        ready = [n for n in waiting if not any(runs_before(m, n) for m in waiting if m != n)]
        if not ready:
            raise MoairError(f"experts {', '.join(waiting)} each read what another fills: no order runs them")
        order.append(ready[0])
        waiting = [n for n in waiting if n != ready[0]]
    return order
