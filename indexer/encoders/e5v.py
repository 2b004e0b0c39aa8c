"""E5-V (arXiv 2407.12580) as the visual expert: a multimodal LLM (LLaVA-NeXT) prompted to sum its
input up in one word; the final hidden state of the prompt's last token is the embedding, for an
image, a text, or an image with a modifying text, all in one space.

Loaded from a local checkpoint folder (the published ``royokong/e5-v``, LLaVA-NeXT-8B, or another
LLaVA-NeXT) through transformers; nothing is downloaded. Prompts, chat wrapping, left padding and
last-token pooling follow the E5-V recipe (``shared/reference/moai-e5v.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from PIL import Image

from indexer.checkpoints import CheckpointModel
from indexer.encoders import BACKBONES
from indexer.encoders.calibration import CHANCE_LEVELS
from indexer.errors import MoairError
from indexer.experts.base import Analysis
from indexer.mixture import normalise_rows

IMAGE_PROMPT = "<image>\nSummary above image in one word: "
TEXT_PROMPT = "<sent>\nSummary above sentence in one word: "
COMPOSED_PROMPT = '<image>Modify this image with "<sent>", describe modified image in one word:'
# E5-V's own wrapping for its Llama-3 backbone: a user turn, then an assistant header and " \n",
# so the last token sits where the one-word answer would start. The tokenizer adds the BOS token.
LLAMA3_TURN = (
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n \n"
)


@BACKBONES.register("e5v")
class E5VBackbone(CheckpointModel):
    """LLaVA-NeXT with E5-V's one-word prompts; last-token pooling of the last hidden layer."""

    name: ClassVar[str] = "e5v"
    cross_modal: ClassVar[bool] = True

    def __init__(self, checkpoint: str | None = None, device: str = "auto", dtype: str = "auto") -> None:
        super().__init__(checkpoint, "the e5v backbone", "AutoModelForImageTextToText", device, dtype)
        if self.model.config.model_type != "llava_next":
            raise MoairError(
                f"{self.checkpoint} holds a {self.model.config.model_type!r} model; the e5v backbone reads "
                "llava_next checkpoints"
            )
        self.processor.tokenizer.padding_side = "left"  # the last position must be the prompt's last token
        self._llama3 = "<|start_header_id|>" in self.processor.tokenizer.get_vocab()
        self.dim = int(self.model.config.text_config.hidden_size)
        self.version = f"e5v-{self.fingerprint}"
        chance = CHANCE_LEVELS["e5v"]
        self.unrelated_similarity, self.unrelated_text_similarity = chance.similarity, chance.text_similarity

    def prompt(self, content: str) -> str:
        """One E5-V prompt wrapped as a chat turn (E5-V's Llama-3 wrapping, else the tokenizer's template)."""
        if self._llama3:
            return LLAMA3_TURN.format(content)
        messages = [{"role": "user", "content": content}]
        return self.processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _embed(self, prompts: list[str], images: list[Image.Image] | None) -> np.ndarray:
        inputs = self.processor(
            text=prompts,
            images=images,
            padding=True,
            return_tensors="pt",
            add_special_tokens=self._llama3,  # another template brings its own BOS
        ).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with self._lock, self._torch.inference_mode():
            hidden = self.model(**inputs, output_hidden_states=True, return_dict=True).hidden_states[-1]
        return normalise_rows(hidden[:, -1, :].float().cpu().numpy())

    def embed(self, analyses: Sequence[Analysis]) -> np.ndarray:
        images = [Image.fromarray(a.image.rgb) for a in analyses]
        return self._embed([self.prompt(IMAGE_PROMPT)] * len(images), images)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text queries into the same space."""
        return self._embed([self.prompt(TEXT_PROMPT.replace("<sent>", t)) for t in texts], None)

    def embed_composed(self, analysis: Analysis, text: str) -> np.ndarray:
        """An image changed by a text ("the same, at night"), E5-V's composed-retrieval prompt."""
        return self._embed(
            [self.prompt(COMPOSED_PROMPT.replace("<sent>", text))], [Image.fromarray(analysis.image.rgb)]
        )[0]
