"""Checkpoint experts (OWLv2 open-world detection, Mask2Former panoptic segmentation) through their
real loading path, on tiny randomly initialised checkpoints of the real architectures saved in
the real format (tests/tiny_models.py), run on real photos. Random weights find nothing at MoAI's
thresholds, so the path is also run with the thresholds at zero to see boxes, labels and the
verbalization come out; the index records the experts and builds them again on open."""

from __future__ import annotations

import json

import numpy as np
import pytest
from devices import DEVICE
from PIL import Image

from indexer.experts.base import Analysis
from indexer.experts.owlv2 import Owlv2Detector, merge_detections, moai_vocabulary
from indexer.experts.panoptic import Mask2FormerPanoptic, mask_box
from indexer.images import load_image
from indexer.records import Detection
from indexer.verbalize import moai_prompt
from retriever import Engine


def test_moai_vocabulary_is_ade20k_full_then_imagenet():
    names = moai_vocabulary()
    assert (
        names[:3] == ("wall", "building", "sky") and names[-1] == "toilet paper"
    )  # ADE20K-Full first, CLIP's ImageNet list last
    assert "kite (bird of prey)" in names and "hammerhead shark" in names and len(names) == len(set(names))
    assert 1700 <= len(names) <= 1847  # 847 + 1000, less the names both lists hold


def test_merge_keeps_the_better_box_for_one_object():
    dog = Detection(label="dog", score=0.9, box=(0.1, 0.1, 0.5, 0.5))
    same_dog = Detection(label="dog", score=0.6, box=(0.12, 0.1, 0.5, 0.52))
    other_dog = Detection(label="dog", score=0.7, box=(0.6, 0.6, 0.9, 0.9))
    leash = Detection(label="leash", score=0.55, box=(0.1, 0.1, 0.5, 0.5))
    assert merge_detections([dog], [same_dog, other_dog, leash]) == [dog, other_dog, leash]


def test_mask_box():
    mask = np.zeros((10, 20), dtype=bool)
    mask[2:5, 4:8] = True
    assert mask_box(mask) == pytest.approx((0.2, 0.2, 0.4, 0.5))
    assert mask_box(np.zeros((4, 4), dtype=bool)) is None


def test_owlv2_finds_boxes_named_from_its_vocabulary(tiny_owlv2, photo):
    names = ("dog", "bicycle", "car", "tree", "fence")
    expert = Owlv2Detector(checkpoint=str(tiny_owlv2), device=DEVICE, min_score=0.0, max_objects=5, vocabulary=names)
    analysis = Analysis.of(load_image(photo("dog")))
    analysis.perception.detections = [
        Detection(label="dog", score=0.99, box=(0.1, 0.3, 0.5, 0.9))
    ]  # the packaged detector's
    expert.run(analysis)
    found = analysis.perception.detections
    assert found[0].label == "dog" and found[0].score == 0.99 and len(found) == 5
    assert all(d.label in names and 0 <= d.box[0] < d.box[2] <= 1 and 0 <= d.box[1] < d.box[3] <= 1 for d in found)
    assert expert.version.startswith("owlv2-") and "/5-names/" in expert.version
    strict = Owlv2Detector(
        checkpoint=str(tiny_owlv2), device=DEVICE, vocabulary=names
    )  # MoAI's 0.5: random weights find nothing
    quiet = Analysis.of(load_image(photo("dog")))
    strict.run(quiet)
    assert all(d.score >= 0.5 for d in quiet.perception.detections)


def test_owlv2_with_cached_queries_matches_the_models_own_forward(tiny_owlv2, photo):
    """The expert encodes its vocabulary once and runs only the image tower per photo; that must
    give what transformers' forward and post-processing give."""
    import torch

    names = ("dog", "bicycle", "a very long name of a thing that is longer than the text tower takes", "tree")
    expert = Owlv2Detector(checkpoint=str(tiny_owlv2), device=DEVICE, vocabulary=names)
    image = Image.fromarray(Analysis.of(load_image(photo("dog"))).resized(490, 490))
    inputs = expert.processor(text=[list(names)], images=[image], return_tensors="pt", truncation=True)
    with torch.inference_mode():
        outputs = expert.model(**inputs)
    reference = expert.processor.image_processor.post_process_object_detection(
        outputs, threshold=0.0, target_sizes=[(490, 490)]
    )[0]
    ours = expert.detect(image)
    assert len(ours) == len(reference["scores"])
    assert [label for _, label, _ in ours] == reference["labels"].tolist()
    assert [score for score, _, _ in ours] == pytest.approx(reference["scores"].tolist(), abs=1e-5)
    expected = np.clip(reference["boxes"].numpy() / 490, 0, 1)
    assert np.allclose([box for _, _, box in ours], expected, atol=1e-4)


def test_panoptic_segments_become_boxes_with_coco_panoptic_names(tiny_mask2former, photo):
    expert = Mask2FormerPanoptic(checkpoint=str(tiny_mask2former), device=DEVICE, min_score=0.0, mask_threshold=0.0)
    analysis = Analysis.of(load_image(photo("dog")))
    expert.run(analysis)
    segments = analysis.perception.segments
    assert segments, "with the thresholds at zero the random model must produce segments"
    labels = set(expert.model.config.id2label.values())
    assert all(s.label in labels and 0 <= s.box[0] < s.box[2] <= 1 and 0 <= s.box[1] < s.box[3] <= 1 for s in segments)
    prompt = moai_prompt(analysis.perception)
    assert prompt.startswith("The image includes bounding box coordinates and their objects: [")
    assert "-merged" not in prompt and "-other" not in prompt and "-stuff" not in prompt


def test_an_index_records_its_checkpoint_experts_and_builds_them_again(
    tiny_owlv2, tiny_mask2former, photo_dir, tmp_path
):
    index = tmp_path / "experts.moair"
    checkpoints = {"owlv2": tiny_owlv2, "panoptic": tiny_mask2former}
    with Engine.open(index, create=True, expert_checkpoints=checkpoints, device=DEVICE) as engine:
        report = engine.add([photo_dir("dog", "kite")])
        assert report.added == 2 and report.skipped == []
        config = engine.store.config
        assert [e.name for e in config.experts] == [
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
        assert {e.name: e.options for e in config.experts if e.options} == {
            name: {"checkpoint": str(folder)} for name, folder in checkpoints.items()
        }
    with Engine.open(index) as engine:
        assert [e.name for e in engine.analyzer.experts][1:3] == ["owlv2", "panoptic"]
        assert engine.search("a dog", k=1)[0].path.endswith("darknet-dog.jpg")
        assert engine.search(image=photo_dir("kite") / "darknet-kite.jpg", k=1)[0].path.endswith("darknet-kite.jpg")


def test_cli_adds_checkpoint_experts(tiny_owlv2, tiny_mask2former, photo_dir, tmp_path):
    from typer.testing import CliRunner

    from api.cli import app

    index, runner = tmp_path / "cli.moair", CliRunner()
    folder = str(photo_dir("dog"))
    result = runner.invoke(
        app,
        [
            "index",
            folder,
            "--index",
            str(index),
            "--expert",
            f"owlv2={tiny_owlv2}",
            "--expert",
            f"panoptic={tiny_mask2former}",
            "--device",
            DEVICE,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 1
    stats = runner.invoke(app, ["stats", "--index", str(index)])
    assert "owlv2" in stats.output and "panoptic" in stats.output
    bad = runner.invoke(app, ["index", folder, "--index", str(tmp_path / "bad.moair"), "--expert", "owlv2"])
    assert bad.exit_code != 0 and "NAME=DIR" in str(bad.exception or bad.output)
