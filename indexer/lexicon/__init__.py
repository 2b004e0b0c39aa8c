"""Words for the verbalization: in other languages than English, and the everyday kind of each
ImageNet class (data plus the rules that use it)."""

import functools
from pathlib import Path

IMAGENET_KINDS_FILE = Path(__file__).with_name("imagenet_kinds.tsv")  # made by build_imagenet_kinds.py


@functools.cache
def imagenet_kinds() -> list[str]:
    """Per ImageNet class, in class order: its everyday kind from WordNet ("bird", "dog",
    "mountain", "shore, landscape"), or "" when none fits."""
    rows = IMAGENET_KINDS_FILE.read_text(encoding="utf-8").splitlines()[1:]
    return [row.split("\t")[2] if row.count("\t") == 2 else "" for row in rows]
