"""How ``imagenet_kinds.tsv`` was made: for each of the 1000 ImageNet classes, the nearest everyday
kind among its WordNet hypernyms ("bald eagle" -> bird, "alp" -> mountain, "cocker spaniel" ->
dog), and "landscape" for geological formations ("valley", "cliff", "seashore").

Inputs (not needed at run time): WordNet 3.0's ``data.noun`` from Debian's ``wordnet-base``
package (``apt-get download wordnet-base``; WordNet licence), whose offsets are ImageNet's synset
ids, and the class order ``timm/data/_info/imagenet_synsets.txt`` from the timm 1.0.31 wheel
(``pip download --no-deps timm==1.0.31``; Apache-2.0).

    python indexer/lexicon/build_imagenet_kinds.py DATA_NOUN IMAGENET_SYNSETS > indexer/lexicon/imagenet_kinds.tsv
"""

from __future__ import annotations

import sys

# Nearest first wins; generic words (animal, device, container, structure) are left out on purpose:
# every image would share them.
KINDS = (
    "bird",
    "fish",
    "insect",
    "spider",
    "snake",
    "lizard",
    "turtle",
    "frog",
    "dog",
    "cat",
    "monkey",
    "bear",
    "rodent",
    "horse",
    "cattle",
    "sheep",
    "pig",
    "deer",
    "whale",
    "shark",
    "crab",
    "snail",
    "butterfly",
    "beetle",
    "flower",
    "tree",
    "fruit",
    "vegetable",
    "mushroom",
    "dish",
    "bread",
    "dessert",
    "beverage",
    "car",
    "truck",
    "bus",
    "train",
    "boat",
    "ship",
    "aircraft",
    "bicycle",
    "motorcycle",
    "house",
    "bridge",
    "tower",
    "church",
    "shop",
    "chair",
    "table",
    "bed",
    "furniture",
    "bottle",
    "cup",
    "box",
    "bag",
    "tool",
    "musical instrument",
    "weapon",
    "clothing",
    "hat",
    "footwear",
    "toy",
    "ball",
    "computer",
    "mountain",
    "shore",
    "reptile",
    "mammal",
)
SCENE = {"geological formation": "landscape", "body of water": "water"}


def read_wordnet(data_noun: str) -> dict[str, tuple[list[str], list[str]]]:
    """offset -> (lemmas, hypernym offsets) of every noun synset."""
    synsets = {}
    with open(data_noun, encoding="latin-1") as f:
        for line in f:
            if line.startswith(" "):  # the licence header
                continue
            fields = line.split(" | ")[0].split()
            count = int(fields[3], 16)
            lemmas = [fields[4 + 2 * i].replace("_", " ").lower() for i in range(count)]
            pointers = fields[5 + 2 * count :]
            hypernyms = [
                pointers[4 * i + 1] for i in range(int(fields[4 + 2 * count])) if pointers[4 * i] in ("@", "@i")
            ]
            synsets[fields[0]] = (lemmas, hypernyms)
    return synsets


def kind_of(offset: str, synsets: dict[str, tuple[list[str], list[str]]]) -> str:
    """The nearest hypernym among ``KINDS`` (breadth first), then a scene word, joined by a comma."""
    name = synsets[offset][0][0]
    found: list[str] = []
    seen, frontier = set(), [offset]
    while frontier:
        ancestors = [h for o in frontier for h in synsets[o][1] if h not in seen]
        seen.update(ancestors)
        for ancestor in ancestors:
            for lemma in synsets[ancestor][0]:
                word = SCENE.get(lemma, lemma if lemma in KINDS else None)
                if word and word != name and word not in found and (not found or word in SCENE.values()):
                    found.append(word)
        frontier = ancestors
    return ", ".join(found)


def main() -> None:
    data_noun, imagenet_synsets = sys.argv[1:3]
    synsets = read_wordnet(data_noun)
    print("index\twordnet_id\tkind")
    with open(imagenet_synsets) as f:
        for index, wnid in enumerate(line.strip() for line in f):
            print(f"{index}\t{wnid}\t{kind_of(wnid[1:], synsets)}")


if __name__ == "__main__":
    main()
