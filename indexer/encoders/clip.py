"""Visual expert from a local CLIP or SigLIP checkpoint (transformers' format: a folder with
``config.json``, ``*.safetensors``, the preprocessor and the tokenizer files, as
``save_pretrained`` writes it and as published models are downloaded).

Its image and text towers share one space, so a text query reaches the visual block directly
(cross-modal search), beside the verbalized caption and OCR blocks. Nothing is downloaded: the
user gives the folder (``moair index --backbone clip --checkpoint DIR``); the index records the
folder and a fingerprint of its files and refuses to search with a different checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from indexer.checkpoints import CheckpointModel
from indexer.encoders import BACKBONES
from indexer.encoders.calibration import CHANCE_LEVELS
from indexer.errors import MoairError
from indexer.experts.base import Analysis
from indexer.mixture import normalise_rows

FAMILIES = ("clip", "siglip")  # transformers' model_type; each has its chance level in CHANCE_LEVELS


@BACKBONES.register("clip")
class ClipBackbone(CheckpointModel):
    """CLIP or SigLIP (chosen by the checkpoint's ``model_type``) through transformers."""

    name: ClassVar[str] = "clip"
    cross_modal: ClassVar[bool] = True

    def __init__(self, checkpoint: str | None = None, device: str = "auto", dtype: str = "auto") -> None:
        super().__init__(checkpoint, "the clip backbone", "AutoModel", device, dtype)
        self.family = self.model.config.model_type
        if self.family not in FAMILIES:
            raise MoairError(
                f"{self.checkpoint} holds a {self.family!r} model; the clip backbone reads clip or siglip checkpoints"
            )
        self.dim = int(self._text_features(["a photo"]).shape[1])
        self.version = f"{self.family}-{self.fingerprint}"
        chance = CHANCE_LEVELS[self.family]
        self.unrelated_similarity, self.unrelated_text_similarity = chance.similarity, chance.text_similarity

    def _features(self, output) -> np.ndarray:
        tensor = output if isinstance(output, self._torch.Tensor) else output.pooler_output
        return normalise_rows(tensor.float().cpu().numpy())

    def _text_features(self, texts: Sequence[str]) -> np.ndarray:
        # SigLIP was trained on text padded to its full length; CLIP pads to the longest.
        padding = "max_length" if self.family == "siglip" else True
        inputs = self.processor(text=list(texts), padding=padding, truncation=True, return_tensors="pt").to(self.device)
        with self._torch.inference_mode():
            return self._features(
                self.model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
            )

    def embed(self, analyses: Sequence[Analysis]) -> np.ndarray:
        inputs = self.processor(images=[a.image.rgb for a in analyses], return_tensors="pt").to(self.device)
        pixels = inputs["pixel_values"].to(self.model.dtype)
        with self._lock, self._torch.inference_mode():
            return self._features(self.model.get_image_features(pixel_values=pixels))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text queries into the image space."""
        with self._lock:
            return self._text_features(texts)
