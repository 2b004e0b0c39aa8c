"""The perception experts on real photos: what they must see, and what they must not invent."""

import re

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from indexer.analyzer import Analyzer
from indexer.errors import MoairError
from indexer.experts import DEFAULT_EXPERTS, EXPERTS, run_order
from indexer.experts.relations import spatial_predicate
from indexer.images import load_image
from indexer.registry import Registry


@pytest.fixture(scope="session")
def analyzer() -> Analyzer:
    return Analyzer()


@pytest.fixture(scope="session")
def seen(analyzer, photo):
    """Perception of a sample photo by short name, computed once."""
    cache = {}

    def run(name):
        if name not in cache:
            cache[name] = analyzer.analyze(load_image(photo(name))).perception
        return cache[name]

    return run


def labels(perception):
    return [d.label for d in perception.detections]


def test_detector_finds_the_objects_in_known_photos(seen):
    assert {"dog", "bicycle"} <= set(labels(seen("dog")))
    assert labels(seen("giraffe")).count("giraffe") >= 1 and "zebra" in labels(seen("giraffe"))
    assert labels(seen("horses")).count("horse") >= 2
    assert {"person", "horse"} <= set(labels(seen("person")))
    assert labels(seen("kite")).count("kite") >= 2 and "person" in labels(seen("kite"))
    assert "bird" in labels(seen("eagle"))


def test_detector_does_not_label_one_box_twice(seen):
    boxes = [d.box for d in seen("dog").detections]
    assert len(boxes) == len(set(boxes))
    assert "cat" not in labels(seen("dog"))


def test_boxes_are_normalised_and_ordered(seen):
    for d in seen("dog").detections:
        x0, y0, x1, y1 = d.box
        assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
    dog = next(d for d in seen("dog").detections if d.label == "dog")
    assert dog.box[0] < 0.5 and dog.box[3] > 0.8  # the dog sits bottom-left in darknet's dog.jpg


def test_tagger_names_the_cat_and_the_eagle_and_their_kinds(seen):
    assert "cat" in seen("chelsea").tags[0].label.lower() and seen("chelsea").tags[0].kind == "cat"
    assert "eagle" in seen("eagle").tags[0].label.lower() and seen("eagle").tags[0].kind == "bird"


def test_medium_tells_photos_black_and_white_photos_and_digital_illustrations(seen, analyzer, tmp_path):
    colour_photos = [
        "dog",
        "horses",
        "giraffe",
        "kite",
        "chelsea",
        "coffee",
        "astronaut",
        "rocket",
        "china",
        "flower",
        "grace_hopper",
    ]
    assert {name: seen(name).medium for name in colour_photos} == dict.fromkeys(colour_photos, "photo")
    assert {name: seen(name).medium for name in ("camera", "coins", "moon")} == dict.fromkeys(
        ("camera", "coins", "moon"), "black and white photo"
    )
    drawing = Image.new("RGB", (800, 600), (40, 90, 200))  # flat shapes, no noise: digital art
    draw = ImageDraw.Draw(drawing)
    draw.ellipse((200, 150, 600, 450), fill=(250, 200, 40))
    draw.polygon([(0, 600), (400, 350), (800, 600)], fill=(30, 160, 90))
    drawing.save(tmp_path / "drawing.png")
    assert analyzer.analyze(load_image(tmp_path / "drawing.png")).perception.medium == "digital illustration"
    noisy = np.clip(np.asarray(drawing, np.float32) + np.random.default_rng(0).normal(0, 6, (600, 800, 3)), 0, 255)
    Image.fromarray(noisy.astype(np.uint8)).save(tmp_path / "noisy.png")  # the same scene with a camera's noise
    assert analyzer.analyze(load_image(tmp_path / "noisy.png")).perception.medium == "photo"


def test_ocr_reads_the_printed_page(seen):
    page = seen("page")
    assert page.text_present
    words = " ".join(t.text for t in page.text).lower()
    assert "segmentation" in words and "markers" in words
    assert all(t.score >= 0.85 for t in page.text)  # MoAI's confidence cut


def test_ocr_confidence_cut_drops_unreadable_handwriting(photo):
    """skimage's ``text`` is handwritten maths: PP-OCR finds regions but reads them badly
    (e.g. "S=" at 0.6); MoAI's 0.85 cut, and the two-character minimum, must keep none of that junk."""
    from indexer.experts.base import Analysis
    from indexer.experts.ocr import PaddleOcr

    analysis = Analysis.of(load_image(photo("text")))
    PaddleOcr(min_confidence=0.0, gate=False).run(analysis)
    assert analysis.perception.text_present  # regions found; what is read of them is one character or junk
    assert all(len(re.findall(r"\w", t.text)) >= 2 for t in analysis.perception.text)
    PaddleOcr(gate=False).run(analysis)
    assert analysis.perception.text == []


def test_ocr_invents_no_text_on_photos_without_text(seen):
    """Texture can trip the cheap detector (coffee, rocket), but nothing read there passes MoAI's cut."""
    for name in ("astronaut", "coffee", "rocket", "chelsea", "dog", "giraffe"):
        assert seen(name).text == [], name
    assert not seen("astronaut").text_present


def test_ocr_reads_a_sign_rendered_onto_a_photo(analyzer, photo, tmp_path):
    image = Image.open(photo("coffee")).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle([40, 30, 360, 100], fill="white")
    draw.text((50, 35), "OPEN 24H", fill="black", font=ImageFont.load_default(size=52))
    path = tmp_path / "sign.png"
    image.save(path)
    found = analyzer.analyze(load_image(path)).perception
    assert any("OPEN" in t.text for t in found.text)


def test_colours_name_the_dominant_hues(analyzer, tmp_path):
    pixels = np.zeros((100, 100, 3), np.uint8)
    pixels[:, :60] = (30, 160, 40)  # green
    pixels[:, 60:] = (250, 250, 250)  # white
    path = tmp_path / "flag.png"
    Image.fromarray(pixels).save(path)
    colours = analyzer.analyze(load_image(path)).perception.colors
    assert [c.name for c in colours] == ["green", "white"]
    assert colours[0].fraction == pytest.approx(0.6, abs=0.03)


def test_relations_from_geometry():
    assert spatial_predicate((0.0, 0.4, 0.2, 0.8), (0.6, 0.4, 0.9, 0.8)) == "left of"
    assert spatial_predicate((0.6, 0.4, 0.9, 0.8), (0.0, 0.4, 0.2, 0.8)) == "right of"
    assert spatial_predicate((0.3, 0.0, 0.5, 0.2), (0.3, 0.6, 0.5, 0.9)) == "above"
    assert spatial_predicate((0.35, 0.1, 0.55, 0.45), (0.2, 0.3, 0.8, 0.95)) == "on"  # rider on a horse


def test_relations_on_a_real_photo_name_repeated_objects(seen):
    horses = seen("horses")
    names = {r.subject for r in horses.relations} | {r.object for r in horses.relations}
    assert any(n.startswith("horse (#") for n in names)
    assert len(horses.relations) <= 10


def test_expert_registry_lists_every_expert_and_rejects_unknown_names():
    assert EXPERTS.names() == [
        "detection",
        "owlv2",
        "panoptic",
        "tags",
        "ocr",
        "hangul",
        "colors",
        "medium",
        "relations",
    ]
    with pytest.raises(Exception, match="unknown expert 'sgg'; choose one of: detection, owlv2"):
        EXPERTS.create("sgg")
    with pytest.raises(Exception, match="the owlv2 expert needs a checkpoint folder"):
        EXPERTS.create("owlv2")  # a checkpoint expert without its folder


def test_experts_run_after_the_experts_whose_output_they_read():
    assert run_order(DEFAULT_EXPERTS) == list(DEFAULT_EXPERTS)  # the defaults are already in data-flow order
    assert [e.name for e in Analyzer().index_config().experts] == list(DEFAULT_EXPERTS)  # recorded in that order
    # given in any order, they run in the registry's: detectors first, each after what it reads
    backwards = ["relations", "owlv2", "hangul", "colors", "ocr", "detection", "detection"]
    assert run_order(backwards) == ["detection", "owlv2", "ocr", "hangul", "colors", "relations"]
    with pytest.raises(MoairError, match="unknown expert 'sgg'"):
        run_order(["detection", "sgg"])


def test_expert_order_refuses_a_cycle_and_unknown_fields():
    def expert(name: str, reads: tuple[str, ...], writes: tuple[str, ...]) -> type:
        return type(name, (), {"name": name, "version": "1", "reads": reads, "writes": writes})

    registry = Registry("expert")
    registry.register("labels")(expert("labels", ("detections",), ("tags",)))
    registry.register("boxes")(expert("boxes", ("tags",), ("detections",)))
    registry.register("relations")(expert("relations", ("detections",), ("relations",)))
    registry.register("typo")(expert("typo", ("detection",), ("tags",)))
    # registered before the expert whose output it reads, it still runs after it
    assert run_order(["relations", "boxes"], registry) == ["boxes", "relations"]
    with pytest.raises(MoairError, match="each read what another fills"):
        run_order(["boxes", "labels"], registry)
    with pytest.raises(MoairError, match="declares fields a Perception does not have: detection"):
        run_order(["typo"], registry)
