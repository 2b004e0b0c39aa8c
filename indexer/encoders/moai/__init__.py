"""MoAI-7B (arXiv 2403.07508) as the visual expert, with E5-V's one-word prompts for embeddings.

moair's own implementation of the architecture (``model``) reads the published ``BK-Lee/MoAI-7B``
checkpoint folder by parameter name (``weights``); nothing is downloaded. Each image goes in as
MoAI reads it: the 490 x 490 picture as 1,225 image tokens, and moair's perception as the
auxiliary input: MoAI's verbalization of the experts' output (``Verbalization.moai``) and the
panoptic colour map (from the ``panoptic`` expert when it runs; empty otherwise), compressed to
64 tokens that the MoAI-Mixer layers attend to.

The embedding is E5-V's: the prompt asks for the input "in one word" and the final hidden state of
the prompt's last token is the vector, for an image (with its auxiliary input), a text, or an image
changed by a text. MoAI was not trained for this; ``moair train-head`` fits a projection on top.
``stream``/``generate`` answer a question about an image (or a text alone) greedily and
``next_token_probabilities`` gives the first answer token's distribution (P("Yes") for reranking).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np

from indexer.checkpoints import checkpoint_folder, fingerprint, torch_device, torch_dtype
from indexer.encoders import BACKBONES
from indexer.encoders.calibration import CHANCE_LEVELS
from indexer.errors import MoairError
from indexer.experts.base import Analysis
from indexer.experts.panoptic import SEGMENT_IDS
from indexer.mixture import normalise_rows
from indexer.verbalize import moai_prompt

SYSTEM = "AI assistant should give helpful and detailed answers to user after fully understanding an image."
TURN = " [UNUSED_TOKEN_146]user\n{}[UNUSED_TOKEN_145]\n[UNUSED_TOKEN_146]assistant\n"
IMAGE_QUESTION = "Summary above image in one word: "
TEXT_QUESTION = "{}\nSummary above sentence in one word: "
COMPOSED_QUESTION = 'Modify this image with "{}", describe modified image in one word:'
# CLIP's normalisation on 0..255 pixels, as MoAI applies it (also to the 0..1 colour map: MoAI's own quirk).
PIXEL_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32) * 255
PIXEL_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32) * 255


def pascal_colormap(count: int = 256) -> np.ndarray:
    """PASCAL VOC's label colours (bits of the index spread over R, G, B), in 0..1 as MoAI uses them."""
    colours = np.zeros((count, 3), dtype=np.int64)
    index = np.arange(count)
    for shift in reversed(range(8)):
        for channel in range(3):
            colours[:, channel] |= ((index >> channel) & 1) << shift
        index = index >> 3
    return colours.astype(np.float32) / 255


def panoptic_map(analysis: Analysis, side: int) -> np.ndarray:
    """MoAI's panoptic input: each segment painted in the colour of its segment number (0 = none)."""
    ids = analysis.cache.get(SEGMENT_IDS)
    if ids is None:
        return np.zeros((side, side, 3), dtype=np.float32)
    ids = np.clip(np.asarray(ids), 0, None)
    return pascal_colormap(max(256, int(ids.max()) + 1))[ids]


@BACKBONES.register("moai")
class MoAIBackbone:
    """MoAI-7B from a local checkpoint folder, embedding with E5-V-style prompts."""

    name: ClassVar[str] = "moai"
    packages: ClassVar[tuple[str, ...]] = ("torch", "transformers", "safetensors", "sentencepiece")
    needs_checkpoint: ClassVar[bool] = True
    extra: ClassVar[str] = "checkpoints"
    cross_modal: ClassVar[bool] = True

    def __init__(self, checkpoint: str | None = None, device: str = "auto", dtype: str = "auto") -> None:
        folder = checkpoint_folder(checkpoint, "the moai backbone")
        try:
            import torch
        except ImportError:
            raise MoairError("the moai backbone needs torch: pip install 'moair[checkpoints]'") from None
        from indexer.encoders.moai.tokenizer import MoAITokenizer
        from indexer.encoders.moai.weights import load_model

        self._torch = torch
        self.checkpoint, self.fingerprint = str(folder), fingerprint(folder)
        self.device = torch_device(device)
        self.model, config = load_model(folder, self.device, torch_dtype(dtype, self.device))
        self.arch = self.model.arch
        self.tokenizer = MoAITokenizer(
            folder / "tokenizer.model", int(config.get("image_token_index", self.arch.output_rows))
        )
        if self.tokenizer.image_id >= self.arch.embedding_rows:
            raise MoairError(
                f"{folder}: the <image> id {self.tokenizer.image_id} is outside tok_embeddings "
                f"({self.arch.embedding_rows} rows)"
            )
        self.dim = self.arch.hidden
        self.version = f"moai-{self.fingerprint}"
        chance = CHANCE_LEVELS["moai"]
        self.unrelated_similarity, self.unrelated_text_similarity = chance.similarity, chance.text_similarity
        self._lock = threading.Lock()

    def options(self) -> dict[str, str]:
        return {"checkpoint": self.checkpoint}

    # --- inputs ---------------------------------------------------------------------------------

    def _pixels(self, images: list[np.ndarray]):
        """[batch, 3, side, side] model input from RGB arrays on the 0..255 scale (or MoAI's 0..1 colour maps)."""
        batch = (np.stack(images).astype(np.float32) - PIXEL_MEAN) / PIXEL_STD
        return self._torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)

    def _token_embeddings(self, ids: list[int]):
        return self.model.model.tok_embeddings(self._torch.tensor(ids, device=self.device))

    def _auxiliary(self, analyses: Sequence[Analysis]):
        """MoAI-Compressor's 64 tokens per image, from the verbalization's word embeddings and the
        projected panoptic colour map."""
        side = self.arch.image_size
        maps = self.model.image_features(self._pixels([panoptic_map(a, side) for a in analyses]))
        compressed = [
            self.model.moai_compressor(
                self._torch.cat((self._token_embeddings(self.tokenizer.encode(moai_prompt(a.perception))), maps[i]))[
                    None
                ]
            )
            for i, a in enumerate(analyses)
        ]
        return self._torch.cat(compressed)

    def _sequences(self, questions: Sequence[str], analyses: Sequence[Analysis] | None):
        """Left-padded input embeddings, the real-token mask and the image-token mask of prompts
        (with the image after the system line when ``analyses`` are given)."""
        torch = self._torch
        features = None
        if analyses is not None:
            side = self.arch.image_size
            features = self.model.image_features(self._pixels([a.resized(side, side) for a in analyses]))
        rows, image_masks = [], []
        for number, question in enumerate(questions):
            prompt = (f"{SYSTEM} <image>" if features is not None else SYSTEM) + TURN.format(question)
            ids = self.tokenizer.encode(prompt)
            pieces, mask = [], []
            for start, end, is_image in _runs(ids, self.tokenizer.image_id):
                if is_image:
                    pieces.append(features[number])
                    mask += [True] * features.shape[1]
                else:
                    pieces.append(self._token_embeddings(ids[start:end]))
                    mask += [False] * (end - start)
            rows.append(torch.cat(pieces))
            image_masks.append(mask)
        length = max(len(r) for r in rows)
        embeds = torch.zeros(len(rows), length, self.dim, device=self.device, dtype=rows[0].dtype)
        real = torch.zeros(len(rows), length, dtype=torch.bool, device=self.device)
        image_rows = torch.zeros_like(real)
        for i, (row, mask) in enumerate(zip(rows, image_masks)):
            embeds[i, length - len(row) :] = row
            real[i, length - len(row) :] = True
            image_rows[i, length - len(row) :] = torch.tensor(mask, device=self.device)
        return embeds, real, image_rows if features is not None else None

    def _last_hidden(self, questions: Sequence[str], analyses: Sequence[Analysis] | None) -> np.ndarray:
        with self._lock, self._torch.inference_mode():
            embeds, real, image_rows = self._sequences(questions, analyses)
            aux = self._auxiliary(analyses) if analyses is not None else None
            hidden, _ = self.model(embeds, real, image_rows, aux)
        return normalise_rows(hidden[:, -1].float().cpu().numpy())

    # --- the backbone interface -------------------------------------------------------------------

    def embed(self, analyses: Sequence[Analysis]) -> np.ndarray:
        return self._last_hidden([IMAGE_QUESTION] * len(analyses), list(analyses))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Text queries into the same space (no image: the mixer and Partial LoRA stay off)."""
        return self._last_hidden([TEXT_QUESTION.format(t) for t in texts], None)

    def embed_composed(self, analysis: Analysis, text: str) -> np.ndarray:
        """An image changed by a text, E5-V's composed-retrieval prompt."""
        return self._last_hidden([COMPOSED_QUESTION.format(text)], [analysis])[0]

    def _prefill(self, question: str, analysis: Analysis | None):
        """Hidden states and key/value cache after reading a prompt (mixer on when there is an image)."""
        embeds, real, image_rows = self._sequences([question], None if analysis is None else [analysis])
        aux = None if analysis is None else self._auxiliary([analysis])
        hidden, cache = self.model(embeds, real, image_rows, aux)
        return hidden, cache, real

    def next_token_probabilities(self, question: str, analysis: Analysis | None = None) -> np.ndarray:
        """The distribution of the first answer token to ``question`` (about the image of ``analysis``)."""
        with self._lock, self._torch.inference_mode():
            hidden, _, _ = self._prefill(question, analysis)
            return self._torch.softmax(self.model.output(hidden[0, -1]).float(), dim=-1).cpu().numpy()

    def stream(
        self, question: str, analysis: Analysis | None = None, max_new_tokens: int = 128, deadline: float | None = None
    ) -> Iterator[str]:
        """MoAI's greedy answer to ``question`` about the image in ``analysis`` (or about nothing),
        as text pieces while it is generated; stops at the end of its turn, after
        ``max_new_tokens`` or at ``deadline`` (a ``time.monotonic()`` value)."""
        torch = self._torch
        stops = {self.tokenizer.eos_id, self.tokenizer.turn_end_id}
        answer: list[int] = []
        shown = ""
        with self._lock, torch.inference_mode():
            hidden, cache, real = self._prefill(question, analysis)
            for _ in range(max_new_tokens):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                token = int(self.model.output(hidden[:, -1]).argmax(-1))
                if token in stops:
                    break
                answer.append(token)
                text = self.tokenizer.decode(answer)
                if len(text) > len(shown):  # a piece can end inside a character: wait for the rest
                    yield text[len(shown) :]
                    shown = text
                real = torch.cat((real, torch.ones(1, 1, dtype=torch.bool, device=self.device)), dim=1)
                hidden, cache = self.model(self._token_embeddings([token])[None], real, cache=cache)

    def generate(self, question: str, analysis: Analysis | None = None, max_new_tokens: int = 128) -> str:
        """The whole answer of ``stream``, stripped."""
        return "".join(self.stream(question, analysis, max_new_tokens)).strip()


def _runs(ids: list[int], image_id: int):
    """(start, end, is_image) for the runs of text tokens and each image token in ``ids``."""
    start = 0
    for position, token in enumerate(ids):
        if token == image_id:
            if position > start:
                yield start, position, False
            yield position, position + 1, True
            start = position + 1
    if start < len(ids):
        yield start, len(ids), False
