"""The tiny checkpoints of tests/tiny_models.py load through the transformers API.

CLIP, SigLIP, LLaVA-NeXT (E5-V), OWLv2 (open-vocabulary detection), Mask2Former (panoptic segmentation).
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from tiny_models import (
    CLIP_DIM,
    COCO_PANOPTIC_LABELS,
    LLAVA_NEXT_DIM,
    MASK2FORMER_IMAGE_SIZE,
    MASK2FORMER_QUERIES,
    OWLV2_BOXES,
    OWLV2_DIM,
    OWLV2_IMAGE_SIZE,
    OWLV2_TEXT_LENGTH,
    SIGLIP_DIM,
    SIGLIP_TEXT_LENGTH,
    make_tiny_clip,
    make_tiny_llava_next,
    make_tiny_mask2former,
    make_tiny_owlv2,
    make_tiny_siglip,
)

TEXTS = ["a dog", "two cats on a sofa", "개"]

CASES = {
    "clip": dict(
        make=make_tiny_clip,
        dim=CLIP_DIM,
        padding=True,
        model="CLIPModel",
        processor="CLIPProcessor",
        tokenizer="CLIPTokenizer",
        image_processor="CLIPImageProcessor",  # CLIPImageProcessorPil without torchvision
        files={
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
            "merges.txt",
        },
    ),
    "siglip": dict(
        make=make_tiny_siglip,
        dim=SIGLIP_DIM,
        padding="max_length",
        model="SiglipModel",
        processor="SiglipProcessor",
        tokenizer="SiglipTokenizer",
        image_processor="SiglipImageProcessor",
        files={"config.json", "model.safetensors", "preprocessor_config.json", "spiece.model", "tokenizer_config.json"},
    ),
}


def _features(output) -> torch.Tensor:
    # transformers 5 returns a BaseModelOutputWithPooling whose pooler_output is the embedding
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _embed(folder, case, images):
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    assert type(model).__name__ == case["model"]
    assert type(processor).__name__ == case["processor"]
    assert type(processor.tokenizer).__name__ == case["tokenizer"]
    assert type(processor.image_processor).__name__.startswith(case["image_processor"])
    text_inputs = processor(text=TEXTS, padding=case["padding"], truncation=True, return_tensors="pt")
    image_inputs = processor(images=images, return_tensors="pt")
    with torch.inference_mode():
        text = _features(model.get_text_features(**text_inputs))
        image = _features(model.get_image_features(**image_inputs))
    return text, image, text_inputs["input_ids"], processor.tokenizer


def build_and_check(make, folder, files: set[str], max_bytes: int | None = None):
    """Build a tiny checkpoint into ``folder``: it holds exactly ``files`` (at most ``max_bytes``
    in all), and building again keeps it as it is."""
    built = make(folder)
    assert built == folder and {p.name for p in built.iterdir()} == files
    assert make(built) == built  # idempotent: an existing checkpoint is kept as is
    if max_bytes is not None:
        assert sum(p.stat().st_size for p in built.iterdir()) < max_bytes
    return built


@pytest.mark.parametrize("name", CASES)
def test_tiny_checkpoint_loads_offline(name, tmp_path, monkeypatch, photo):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    case = CASES[name]
    folder = build_and_check(case["make"], tmp_path / name, case["files"])

    images = [Image.open(photo("dog")).convert("RGB"), Image.open(photo("chelsea")).convert("RGB")]
    text, image, input_ids, tokenizer = _embed(folder, case, images)
    assert text.shape == (len(TEXTS), case["dim"])
    assert image.shape == (len(images), case["dim"])
    assert torch.isfinite(text).all() and torch.isfinite(image).all()

    again_text, again_image, _, _ = _embed(folder, case, images)
    assert torch.equal(text, again_text) and torch.equal(image, again_image)

    if name == "siglip":
        assert input_ids.shape == (len(TEXTS), SIGLIP_TEXT_LENGTH)  # padded to max_length
        assert tokenizer.unk_token_id in input_ids[2].tolist()  # Hangul is out of vocabulary

    # a second build elsewhere is byte-for-byte the same checkpoint
    other = case["make"](tmp_path / f"{name}-again")
    for file in case["files"]:
        assert (other / file).read_bytes() == (folder / file).read_bytes(), file


def test_fixtures_load_through_the_other_entry_points(tiny_clip, tiny_siglip, monkeypatch):
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel, SiglipModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for folder, model_class, dim in ((tiny_clip, CLIPModel, CLIP_DIM), (tiny_siglip, SiglipModel, SIGLIP_DIM)):
        assert (folder / "config.json").is_file()
        model = model_class.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        pixels = image_processor(images=[Image.new("RGB", (50, 40), "red")], return_tensors="pt")["pixel_values"]
        ids = tokenizer(["a dog on a beach"], padding="max_length", return_tensors="pt")
        with torch.inference_mode():
            assert _features(model.get_image_features(pixel_values=pixels)).shape == (1, dim)
            assert _features(model.get_text_features(**ids)).shape == (1, dim)


# E5-V's prompts (kongds/E5-V): the embedding is the last prompt token's last hidden state.
E5V_IMAGE_PROMPT = "<image>\nSummary above image in one word: "
E5V_TEXT_PROMPT = "<sent>\nSummary above sentence in one word: "
E5V_TEXTS = ["a dog", "두 마리 고양이"]
LLAVA_NEXT_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "processor_config.json",
    "chat_template.jinja",
    "tokenizer.json",
    "tokenizer_config.json",
}


def _e5v_prompt(processor, content: str) -> str:
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _last_token_states(model, inputs) -> torch.Tensor:
    with torch.inference_mode():
        output = model(**inputs, output_hidden_states=True, return_dict=True)
    return output.hidden_states[-1][:, -1, :]


def _e5v_embed(folder, images):
    """Embed images and texts the way E5-V does; returns embeddings and the encoded inputs."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval()
    assert type(processor).__name__ == "LlavaNextProcessor"
    assert type(processor.tokenizer).__name__ == "TokenizersBackend"  # transformers 5's fast tokenizer
    assert type(processor.image_processor).__name__.startswith("LlavaNextImageProcessor")
    assert type(model).__name__ == "LlavaNextForConditionalGeneration"
    processor.tokenizer.padding_side = "left"  # the last position must be the prompt's last token

    # The chat template already starts with <|begin_of_text|>: the tokenizer must not add another.
    image_prompt = _e5v_prompt(processor, E5V_IMAGE_PROMPT)
    image_inputs = processor(
        text=[image_prompt] * len(images), images=images, padding=True, add_special_tokens=False, return_tensors="pt"
    )
    text_prompts = [_e5v_prompt(processor, E5V_TEXT_PROMPT.replace("<sent>", text)) for text in E5V_TEXTS]
    text_inputs = processor(text=text_prompts, padding=True, add_special_tokens=False, return_tensors="pt")
    image = _last_token_states(model, image_inputs)
    text = _last_token_states(model, text_inputs)
    return image, text, image_inputs, text_inputs, processor, model


def test_tiny_llava_next_loads_and_embeds_like_e5v(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = build_and_check(make_tiny_llava_next, tmp_path / "llava-next", LLAVA_NEXT_FILES)
    assert (folder / "model.safetensors").stat().st_size < 1_000_000
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llava_next"
    assert config["text_config"]["model_type"] == "llama"
    assert config["vision_config"]["model_type"] == "clip_vision_model"
    template = (folder / "chat_template.jinja").read_text()
    assert json.loads((folder / "tokenizer_config.json").read_text())["chat_template"] == template

    images = [Image.open(photo("dog")).convert("RGB"), Image.open(photo("chelsea")).convert("RGB")]
    image, text, image_inputs, text_inputs, processor, model = _e5v_embed(folder, images)
    tokenizer = processor.tokenizer
    assert config["image_token_index"] == processor.image_token_id == tokenizer.convert_tokens_to_ids("<image>")

    # the Llama-3 chat format around E5-V's prompt
    assert _e5v_prompt(processor, E5V_TEXT_PROMPT.replace("<sent>", "a dog")) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        "a dog\nSummary above sentence in one word: <|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert tokenizer.apply_chat_template(
        [{"role": "user", "content": E5V_IMAGE_PROMPT}], add_generation_prompt=True, tokenize=False
    ) == _e5v_prompt(processor, E5V_IMAGE_PROMPT)
    korean = tokenizer.decode(text_inputs["input_ids"][1], skip_special_tokens=True)
    assert korean.startswith("user\n\n두 마리 고양이\n")  # byte-level BPE: no unknown tokens

    # anyres: each photo is tiled by its own size (image_sizes) into its own number of <image> tokens
    assert image_inputs["image_sizes"].tolist() == [[img.height, img.width] for img in images]
    counts = (image_inputs["input_ids"] == processor.image_token_id).sum(dim=1).tolist()
    expected = processor._get_num_multimodal_tokens(image_sizes=[[i.height, i.width] for i in images])
    assert counts == expected.num_image_tokens
    assert counts[0] != counts[1]

    for inputs in (image_inputs, text_inputs):
        mask = inputs["attention_mask"]
        assert (mask[:, -1] == 1).all()  # left padding: the last position is a real token
        assert (mask == 0).any()  # the two prompts differ in length, so one row is padded
        first = mask.argmax(dim=1)  # first real token of each row
        assert (inputs["input_ids"][torch.arange(len(first)), first] == tokenizer.bos_token_id).all()
        assert ((inputs["input_ids"] == tokenizer.bos_token_id).sum(dim=1) == 1).all()
    assert "pixel_values" not in text_inputs

    for embedding in (image, text):
        assert embedding.shape == (2, LLAVA_NEXT_DIM)
        assert torch.isfinite(embedding).all()
        assert not torch.equal(embedding[0], embedding[1])

    # left padding does not change an embedding: the padded row equals the same prompt alone
    image_prompt = _e5v_prompt(processor, E5V_IMAGE_PROMPT)
    alone = processor(text=[image_prompt], images=images[1:], add_special_tokens=False, return_tensors="pt")
    torch.testing.assert_close(_last_token_states(model, alone)[0], image[1], atol=1e-5, rtol=1e-5)

    # deterministic across loads
    again_image, again_text, *_ = _e5v_embed(folder, images)
    assert torch.equal(image, again_image) and torch.equal(text, again_text)

    # generation runs (a few tokens, greedy) on one image prompt
    one = processor(text=[image_prompt], images=images[:1], add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        generated = model.generate(**one, max_new_tokens=3, do_sample=False)
    length = one["input_ids"].shape[1]
    assert length < generated.shape[1] <= length + 3
    assert torch.equal(generated[:, :length], one["input_ids"])

    # a second build elsewhere is byte-for-byte the same checkpoint
    other = make_tiny_llava_next(tmp_path / "llava-next-again")
    for file in LLAVA_NEXT_FILES:
        assert (other / file).read_bytes() == (folder / file).read_bytes(), file


def test_tiny_llava_next_fixture_loads_through_the_other_entry_points(tiny_llava_next, monkeypatch):
    from transformers import AutoImageProcessor, AutoTokenizer, LlavaNextForConditionalGeneration

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = LlavaNextForConditionalGeneration.from_pretrained(
        tiny_llava_next,
        local_files_only=True,
        dtype=torch.float32,  # transformers 5: dtype=, not torch_dtype=
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_llava_next, local_files_only=True, padding_side="left")
    image_processor = AutoImageProcessor.from_pretrained(tiny_llava_next, local_files_only=True)
    pixels = image_processor(images=[Image.new("RGB", (50, 40), "red")], return_tensors="pt")
    assert pixels["image_sizes"].tolist() == [[40, 50]]
    assert pixels["pixel_values"].shape[-3:] == (3, 32, 32)
    # the tokenizer alone carries the chat template (tokenizer_config.json), Llama-3 style
    ids = tokenizer.apply_chat_template(
        [[{"role": "user", "content": "a dog"}], [{"role": "user", "content": "개"}]],
        add_generation_prompt=True,
        padding=True,
        return_dict=True,
        return_tensors="pt",
    )
    ending = "개<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    assert tokenizer.decode(ids["input_ids"][1]).endswith(ending)
    assert (ids["attention_mask"][:, -1] == 1).all() and (ids["input_ids"] == tokenizer.bos_token_id).sum() == 2
    with torch.inference_mode():
        states = model(**ids, output_hidden_states=True).hidden_states[-1][:, -1, :]
    assert states.shape == (2, LLAVA_NEXT_DIM) and torch.isfinite(states).all()


# --- OWLv2: open-vocabulary detection, one image against a list of text queries ---

OWLV2_FILES = {
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
}
OWLV2_QUERIES = ["a photo of a dog", "a photo of a cat", "a bicycle"]


def _detect(folder, image, queries):
    """Load through the Auto classes and run one image against ``queries``."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(folder, local_files_only=True).eval()
    assert type(processor).__name__ == "Owlv2Processor"
    assert type(processor.tokenizer).__name__ == "CLIPTokenizer"
    assert type(processor.image_processor).__name__.startswith("Owlv2ImageProcessor")  # ...Pil without torchvision
    assert type(model).__name__ == "Owlv2ForObjectDetection"
    inputs = processor(text=[queries], images=[image], truncation=True, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    return outputs, inputs, processor


def test_tiny_owlv2_loads_and_detects_offline(tmp_path, monkeypatch, photo):
    from transformers.image_transforms import center_to_corners_format

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = build_and_check(make_tiny_owlv2, tmp_path / "owlv2", OWLV2_FILES, max_bytes=2_000_000)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "owlv2" and config["architectures"] == ["Owlv2ForObjectDetection"]
    assert config["text_config"]["model_type"] == "owlv2_text_model"
    assert config["text_config"]["max_position_embeddings"] == OWLV2_TEXT_LENGTH
    assert config["vision_config"]["model_type"] == "owlv2_vision_model"
    assert config["vision_config"]["image_size"] == OWLV2_IMAGE_SIZE
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    assert preprocessor["image_processor_type"] == "Owlv2ImageProcessor"

    image = Image.open(photo("dog")).convert("RGB")  # 768 x 576: landscape, padded at the bottom
    outputs, inputs, processor = _detect(folder, image, OWLV2_QUERIES)
    assert inputs["input_ids"].shape == (len(OWLV2_QUERIES), OWLV2_TEXT_LENGTH)  # padded to max_length with "!"
    assert (inputs["input_ids"][:, -1] == processor.tokenizer.convert_tokens_to_ids("!")).all()
    assert inputs["pixel_values"].shape == (1, 3, OWLV2_IMAGE_SIZE, OWLV2_IMAGE_SIZE)
    # padded to a square before resizing: the rows below the photo are black (0 before normalisation)
    mean, std = torch.tensor(processor.image_processor.image_mean), torch.tensor(processor.image_processor.image_std)
    photo_rows = round(OWLV2_IMAGE_SIZE * image.height / image.width)  # 48 of 64
    below = inputs["pixel_values"][0, :, photo_rows + 2 :, :]  # the anti-aliasing blur spills over one row
    torch.testing.assert_close(below, (-mean / std)[:, None, None].expand_as(below))

    assert outputs.logits.shape == (1, OWLV2_BOXES, len(OWLV2_QUERIES))  # one logit per box and query
    assert outputs.pred_boxes.shape == (1, OWLV2_BOXES, 4)  # (cx, cy, w, h) relative to the padded square
    assert outputs.objectness_logits.shape == (1, OWLV2_BOXES)
    assert outputs.text_embeds.shape == (1, len(OWLV2_QUERIES), OWLV2_DIM)
    assert torch.isfinite(outputs.logits).all()
    assert ((outputs.pred_boxes > 0) & (outputs.pred_boxes < 1)).all()

    # post-processing: xyxy boxes in pixels of the padded square scaled to max(height, width)
    target = [(image.height, image.width)]
    results = processor.post_process_grounded_object_detection(
        outputs, threshold=0.0, target_sizes=target, text_labels=[OWLV2_QUERIES]
    )
    assert len(results) == 1
    result = results[0]
    assert set(result) == {"scores", "labels", "boxes", "text_labels"}
    assert result["boxes"].shape == (OWLV2_BOXES, 4)
    assert result["labels"].tolist() == outputs.logits[0].argmax(-1).tolist()  # index into the query list
    assert result["text_labels"] == [OWLV2_QUERIES[i] for i in result["labels"].tolist()]
    torch.testing.assert_close(result["scores"], outputs.logits[0].max(-1).values.sigmoid())
    side = max(image.height, image.width)
    torch.testing.assert_close(result["boxes"], center_to_corners_format(outputs.pred_boxes[0]) * side)
    x0, y0, x1, y1 = result["boxes"].unbind(-1)
    assert (x1 > x0).all() and (y1 > y0).all()  # random boxes, but each of positive size
    plain = processor.image_processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=target)[0]
    assert set(plain) == {"scores", "labels", "boxes"} and torch.equal(plain["boxes"], result["boxes"])
    strict = processor.post_process_grounded_object_detection(outputs, threshold=1.0, target_sizes=target)[0]
    assert strict["boxes"].shape == (0, 4) and strict["text_labels"] is None

    # deterministic across loads
    again, _, _ = _detect(folder, image, OWLV2_QUERIES)
    assert torch.equal(outputs.logits, again.logits) and torch.equal(outputs.pred_boxes, again.pred_boxes)

    # a long vocabulary in one call (one image, 300 queries), with a query longer than 16 tokens truncated
    names = [f"thing number {i}" for i in range(299)] + ["a very long name for a thing " * 4]
    many, many_inputs, _ = _detect(folder, image, names)
    assert many_inputs["input_ids"].shape == (300, OWLV2_TEXT_LENGTH)
    assert many.logits.shape == (1, OWLV2_BOXES, 300)
    found = processor.post_process_grounded_object_detection(many, threshold=0.0, target_sizes=target)[0]
    assert found["labels"].max() < 300

    # a second build elsewhere is byte-for-byte the same checkpoint
    other = make_tiny_owlv2(tmp_path / "owlv2-again")
    for file in OWLV2_FILES:
        assert (other / file).read_bytes() == (folder / file).read_bytes(), file


# --- Mask2Former: COCO panoptic segmentation ---

MASK2FORMER_FILES = {"config.json", "model.safetensors", "preprocessor_config.json"}


def _segment(folder, image):
    from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation, AutoProcessor

    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    # no tokenizer: AutoProcessor gives the image processor itself
    assert type(AutoProcessor.from_pretrained(folder, local_files_only=True)) is type(processor)
    assert type(processor).__name__.startswith("Mask2FormerImageProcessor")  # ...Pil without torchvision
    model = AutoModelForUniversalSegmentation.from_pretrained(folder, local_files_only=True).eval()
    assert type(model).__name__ == "Mask2FormerForUniversalSegmentation"
    inputs = processor(images=[image], return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    return outputs, inputs, processor, model


def test_tiny_mask2former_loads_and_segments_offline(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = build_and_check(make_tiny_mask2former, tmp_path / "mask2former", MASK2FORMER_FILES, max_bytes=2_000_000)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mask2former" and config["architectures"] == ["Mask2FormerForUniversalSegmentation"]
    assert config["backbone_config"]["model_type"] == "swin"
    assert config["num_queries"] == MASK2FORMER_QUERIES
    assert config["id2label"] == {str(i): name for i, name in enumerate(COCO_PANOPTIC_LABELS)}
    assert json.loads((folder / "preprocessor_config.json").read_text())["image_processor_type"] == (
        "Mask2FormerImageProcessor"
    )

    image = Image.open(photo("dog")).convert("RGB")
    outputs, inputs, processor, model = _segment(folder, image)
    labels = model.config.id2label
    assert len(labels) == model.config.num_labels == 133
    assert (labels[0], labels[16], labels[86], labels[131], labels[132]) == (
        "person", "dog", "door-stuff", "wall-other-merged", "rug-merged"
    )  # fmt: skip
    assert inputs["pixel_values"].shape == (1, 3, MASK2FORMER_IMAGE_SIZE, MASK2FORMER_IMAGE_SIZE)
    assert outputs.class_queries_logits.shape == (1, MASK2FORMER_QUERIES, 133 + 1)  # + "no object"
    side = MASK2FORMER_IMAGE_SIZE // 4  # masks at a quarter of the input resolution
    assert outputs.masks_queries_logits.shape == (1, MASK2FORMER_QUERIES, side, side)
    assert torch.isfinite(outputs.class_queries_logits).all() and torch.isfinite(outputs.masks_queries_logits).all()

    target = [(image.height, image.width)]
    stuff = set(range(80, 133))
    # at the published default thresholds random weights find nothing: the map is all -1
    nothing = processor.post_process_panoptic_segmentation(outputs, label_ids_to_fuse=stuff, target_sizes=target)
    assert len(nothing) == 1 and nothing[0]["segments_info"] == []
    assert nothing[0]["segmentation"].shape == target[0] and (nothing[0]["segmentation"] == -1).all()

    # with every threshold at zero some segments come out
    result = processor.post_process_panoptic_segmentation(
        outputs, threshold=0.0, mask_threshold=0.0, overlap_mask_area_threshold=0.0, label_ids_to_fuse=stuff,
        target_sizes=target,
    )[0]  # fmt: skip
    segmentation, segments = result["segmentation"], result["segments_info"]
    assert segmentation.shape == target[0] and segmentation.dtype == torch.int32
    assert segments, "no segments at zero thresholds"
    ids = [segment["id"] for segment in segments]
    assert ids == list(range(1, len(segments) + 1))  # segment ids count from 1; 0 is "no segment"
    assert set(torch.unique(segmentation).tolist()) <= {0, *ids}
    for segment in segments:
        assert set(segment) == {"id", "label_id", "was_fused", "score"}
        assert 0 <= segment["label_id"] < 133 and labels[segment["label_id"]] in COCO_PANOPTIC_LABELS
        assert segment["was_fused"] == (segment["label_id"] in stuff)
        assert 0.0 < segment["score"] <= 1.0
        assert (segmentation == segment["id"]).any()

    # deterministic across loads
    again, *_ = _segment(folder, image)
    assert torch.equal(outputs.class_queries_logits, again.class_queries_logits)
    assert torch.equal(outputs.masks_queries_logits, again.masks_queries_logits)

    # a second build elsewhere is byte-for-byte the same checkpoint
    other = make_tiny_mask2former(tmp_path / "mask2former-again")
    for file in MASK2FORMER_FILES:
        assert (other / file).read_bytes() == (folder / file).read_bytes(), file


def test_detection_and_segmentation_fixtures_load_through_the_model_classes(tiny_owlv2, tiny_mask2former, monkeypatch):
    from transformers import (
        AutoImageProcessor,
        AutoTokenizer,
        Mask2FormerForUniversalSegmentation,
        Owlv2ForObjectDetection,
    )

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    image = Image.new("RGB", (50, 40), "red")
    owlv2 = Owlv2ForObjectDetection.from_pretrained(tiny_owlv2, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_owlv2, local_files_only=True)
    pixels = AutoImageProcessor.from_pretrained(tiny_owlv2, local_files_only=True)(images=[image], return_tensors="pt")
    ids = tokenizer(["a dog", "개"], padding="max_length", truncation=True, return_tensors="pt")
    assert ids["input_ids"].shape == (2, OWLV2_TEXT_LENGTH)
    with torch.inference_mode():
        detected = owlv2(**ids, pixel_values=pixels["pixel_values"])
    assert detected.logits.shape == (1, OWLV2_BOXES, 2)

    mask2former = Mask2FormerForUniversalSegmentation.from_pretrained(tiny_mask2former, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(tiny_mask2former, local_files_only=True)
    with torch.inference_mode():
        segmented = mask2former(**processor(images=[image], return_tensors="pt"))
    assert segmented.class_queries_logits.shape == (1, MASK2FORMER_QUERIES, 134)
    result = processor.post_process_semantic_segmentation(segmented, target_sizes=[(40, 50)])[0]
    assert result.shape == (40, 50) and int(result.max()) < 133
