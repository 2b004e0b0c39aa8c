"""MoAI's tokenizer: InternLM2's SentencePiece model (``tokenizer.model``) with ``<image>`` added
after the vocabulary, read with ``sentencepiece`` directly.

As transformers' slow tokenizers do, special strings (``<s>``, ``</s>``, ``<unk>``, ``<image>``
and InternLM2's turn markers) are split out first and every other chunk goes to SentencePiece on
its own; a BOS token starts each encoded text (InternLM2's ``add_bos_token``).
"""

from __future__ import annotations

import re
from pathlib import Path

from indexer.errors import MoairError

IMAGE = "<image>"
TURN_START = "[UNUSED_TOKEN_146]"  # InternLM2's <|im_start|>
TURN_END = "[UNUSED_TOKEN_145]"  # InternLM2's <|im_end|>


class MoAITokenizer:
    """Text <-> ids for MoAI prompts; ``image_id`` is the id ``<image>`` stands for."""

    def __init__(self, model_file: Path, image_id: int) -> None:
        try:
            import sentencepiece
        except ImportError:
            raise MoairError("the moai backbone needs sentencepiece: pip install 'moair[checkpoints]'") from None
        if not model_file.is_file():
            raise MoairError(f"{model_file.parent} has no tokenizer.model (MoAI's SentencePiece model)")
        self.pieces = sentencepiece.SentencePieceProcessor()
        try:
            self.pieces.Load(str(model_file))
        except (OSError, RuntimeError) as e:
            raise MoairError(f"{model_file} is not a SentencePiece model: {str(e)[:200]}") from None
        self.bos_id, self.eos_id = self.pieces.bos_id(), self.pieces.eos_id()
        self.image_id = image_id
        self.special = {IMAGE: image_id, "<s>": self.bos_id, "</s>": self.eos_id, "<unk>": self.pieces.unk_id()}
        for marker in (TURN_START, TURN_END):
            piece = self.pieces.PieceToId(marker)
            if piece == self.pieces.unk_id():
                raise MoairError(f"{model_file} lacks InternLM2's {marker} piece: not MoAI's tokenizer")
            self.special[marker] = piece
        self.turn_end_id = self.special[TURN_END]
        self._splitter = re.compile("(" + "|".join(re.escape(s) for s in self.special) + ")")

    def encode(self, text: str, bos: bool = True) -> list[int]:
        ids = [self.bos_id] if bos else []
        for chunk in self._splitter.split(text):
            if chunk in self.special:
                ids.append(self.special[chunk])
            elif chunk:
                ids.extend(self.pieces.EncodeAsIds(chunk))
        return ids

    def word_ids(self, word: str) -> list[int]:
        """The ids of ``word`` as one piece, with and without SentencePiece's word-start mark."""
        found = {self.pieces.PieceToId(piece) for piece in (word, "\u2581" + word)}
        return sorted(found - {self.pieces.unk_id()})

    def decode(self, ids: list[int]) -> str:
        return self.pieces.DecodeIds([i for i in ids if i < self.pieces.GetPieceSize()])
