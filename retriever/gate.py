"""The gate: how much each expert block weighs for one query (see ``indexer.mixture`` for the score
it weighs). A text query weighs the caption block; quoted words or words about writing ("sign",
"says", "간판", ...) shift weight to the OCR block and embed the quoted part there. An image
query weighs the visual block and compares verbalizations too. Image + text weighs both. With a
cross-modal backbone (CLIP, SigLIP), a text query is also embedded by the backbone's text tower
and weighs the visual block as much as the caption: text-to-image search in one space, with the
verbalized blocks beside it. Like MoAI-Mixer's gates, the weights are per query and soft: no
block is switched off by a top-k."""

from __future__ import annotations

import re
from dataclasses import dataclass

_QUOTED = re.compile(r"[\"“”'‘’「」『』]([^\"“”'‘’「」『』]{2,})[\"“”'‘’「」『』]")
_TEXT_WORDS = re.compile(
    r"\b(sign|signs|says|saying|reads|reading|written|writing|text|word|words|label|letters|logo|poster|banner|caption)\b"
    r"|글자|글씨|텍스트|간판|문구|적힌|쓰여|써있|표지판",
    re.IGNORECASE,
)


@dataclass
class QueryGate:
    """The gate's decision for one query: block weights and what the OCR block should match."""

    weights: dict[str, float]
    text_for_ocr: str | None


def gate(
    text: str | None, has_image: bool, image_has_text: bool = False, text_reaches_visual: bool = False
) -> QueryGate:
    """Choose block weights from the query's form and wording (see the module docstring). With a
    cross-modal backbone (``text_reaches_visual``), a text-only query weighs the visual block too."""
    weights = {"caption": 0.0, "text": 0.0, "visual": 0.0}
    text_for_ocr = None
    if has_image:
        weights["visual"] = 1.0 if not text else 0.6
        weights["caption"] = 0.35
        weights["text"] = 0.35 if image_has_text else 0.0
    if text:
        quoted = [m.group(1).strip() for m in _QUOTED.finditer(text)]
        about_text = bool(quoted) or bool(_TEXT_WORDS.search(text))
        weights["caption"] = 0.6 if about_text else 1.0
        weights["text"] = 1.0 if about_text else 0.35
        text_for_ocr = " ".join(quoted) if quoted else text
        if text_reaches_visual and not has_image:
            weights["visual"] = 1.0
    return QueryGate(weights=weights, text_for_ocr=text_for_ocr)
