"""What a query asks, beyond its words: task instructions (recognised, taken out of the text that
is embedded, and read for the kind of item they ask for) and query images that are mostly text.

UniIR (and M-BEIR's evaluation) puts a task instruction before the query text: "Find me an
everyday image that matches the given caption. A dog on a beach." moair's encoders are not
instruction-tuned, so embedded as words the instruction is matched as content: every query then
shares a sentence about "images" and "captions", and a few items become hubs that answer
everything (measured on an unseen set: Korean Recall@1 fell from 44 to 17 with instructions).
Here the instruction steers instead of being matched: it is removed from the text, and the kind
of item it asks for (an image, a text, or both) is kept for the search to use.

An instruction is the query's first sentence when it asks for something to be found (a request
verb: find, retrieve, identify, show, ...; or a "which ...?" question) and names what (an image,
picture, photo, caption, passage, article, ...). Plain requests in front of a query ("find a
photo of a dog") are cut to their content ("a dog").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from indexer.records import Modality, Perception

_REQUEST = (
    r"find|retrieve|identify|search|locate|obtain|fetch|seek|select|pick|choose|show|provide|return|match|discover|spot"
    r"|get|recommend|pull up|bring up|look for|look up|give me|want|need|looking for"
)
_IMAGE_NOUNS = r"images?|pictures?|photos?|photographs?|pics?|visuals?|shots?|snapshots?|scenes?"
_TEXT_NOUNS = (
    r"captions?|descriptions?|passages?|paragraphs?|articles?|texts?|documents?|snippets?|segments?|entr(?:y|ies)"
    r"|answers?|sentences?|summar(?:y|ies)|titles?|wikipedia"
)
_SENTENCE = re.compile(r"^\s*(.+?[.?!])(?:\s+|$)(.*)$", re.DOTALL)
_ASKS = re.compile(rf"\b(?:{_REQUEST})\b", re.IGNORECASE)
_WHICH = re.compile(r"^\s*(?:which|what)\b.*\?\s*$", re.IGNORECASE | re.DOTALL)
_NAMES_A_TARGET = re.compile(rf"\b(?:{_IMAGE_NOUNS}|{_TEXT_NOUNS})\b", re.IGNORECASE)
# what is asked for: the noun the request is about ("a caption for this image" asks for a text)
_TARGET = re.compile(
    rf"\b(?:{_REQUEST})\b(?:\s+(?:me|us|for))?(?:\s+(?:a|an|the|some|any|all|one|matching|relevant|corresponding))*"
    rf"(?:\s+[\w'-]+){{0,4}}?\s+(?:(?P<image>{_IMAGE_NOUNS})(?!\s+(?:{_TEXT_NOUNS}))|(?:(?:{_IMAGE_NOUNS})\s+)?(?P<text>{_TEXT_NOUNS}))\b",
    re.IGNORECASE,
)
_BOTH = re.compile(
    rf"\b(?:{_IMAGE_NOUNS})\b[^.?!]{{0,40}}\b(?:and|with|plus|alongside)\b[^.?!]{{0,20}}\b(?:{_TEXT_NOUNS})\b",
    re.IGNORECASE,
)
_PLAIN_REQUEST = re.compile(
    rf"^\s*(?:please\s+)?(?:{_REQUEST})\s+(?:me\s+)?(?:(?:a|an|the|some|any|all|my)\s+)?(?:{_IMAGE_NOUNS})\s+"
    r"(?:of|with|showing|that shows?|where|in which|containing|that contains?|depicting|featuring|about)"
    r"\s+(?P<content>.+)$",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class ParsedQuery:
    """A query text split into what to match and the instruction around it."""

    text: str | None  # what to match; None when the text was only an instruction
    instruction: str | None = None
    wants: Modality | None = None  # the kind of item the instruction asks for


def parse_query(text: str | None, has_image: bool = False) -> ParsedQuery:
    """Split ``text`` into its instruction (see the module docstring) and what to match. Without
    an image a text that is all instruction is kept as what to match (it is all there is)."""
    if not text or not text.strip():
        return ParsedQuery(None)
    text = text.strip()
    sentence = _SENTENCE.match(text)
    if sentence and _is_instruction(sentence.group(1)):
        instruction, rest = sentence.group(1).strip(), sentence.group(2).strip()
        if rest or has_image:
            return ParsedQuery(_sentence_start(_plain(rest)) or None, instruction, _wants(instruction))
    plain = _PLAIN_REQUEST.match(text)
    if plain:
        return ParsedQuery(plain.group("content").strip(), None, "image")
    return ParsedQuery(text)


def _is_instruction(sentence: str) -> bool:
    if not _NAMES_A_TARGET.search(sentence):
        return False
    return bool(_ASKS.search(sentence) or _WHICH.match(sentence))


def _wants(instruction: str) -> Modality | None:
    if _BOTH.search(instruction):
        return "image,text"
    target = _TARGET.search(instruction)
    if target is not None:
        return "image" if target.group("image") else "text"
    first = _NAMES_A_TARGET.search(instruction)  # "which image ...?": the first thing it names
    return None if first is None else "image" if re.fullmatch(_IMAGE_NOUNS, first.group(0), re.IGNORECASE) else "text"


def _sentence_start(text: str) -> str:
    """What followed the instruction, written as the sentence it now is (UniIR's format_string
    capitalises only the instruction: "... caption. a dog." is matched as "A dog.", as without it)."""
    return text[:1].upper() + text[1:]


def _plain(text: str) -> str:
    """``text`` without a plain request in front ("find a photo of a dog" -> "a dog")."""
    plain = _PLAIN_REQUEST.match(text)
    return plain.group("content").strip() if plain else text


MOSTLY_TEXT_WORDS = 3  # words read in the image, at least
MOSTLY_TEXT_AREA = 0.05  # share of the image the read lines cover, at least ...
MOSTLY_TEXT_BACKGROUND = 0.8  # ... or share of one plain colour around them (small writing on a big card)
MOSTLY_TEXT_OBJECT = 0.15  # no detected object may cover more than this share


def mostly_text(perception: Perception) -> bool:
    """Whether an image is mostly writing (a sentence drawn or printed, a page, a screenshot of
    text) rather than a scene with some text in it: several words read, covering a fair part of
    the image or standing on a plain background, and no large object. Such a query image is
    matched by what it says."""
    words = sum(len(re.findall(r"\w{2,}", line.text)) for line in perception.text)
    covered = sum((line.box[2] - line.box[0]) * (line.box[3] - line.box[1]) for line in perception.text)
    plain = max((c.fraction for c in perception.colors), default=0.0)
    largest = max(((d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) for d in perception.detections), default=0.0)
    on_its_own = covered >= MOSTLY_TEXT_AREA or plain >= MOSTLY_TEXT_BACKGROUND
    return words >= MOSTLY_TEXT_WORDS and on_its_own and largest <= MOSTLY_TEXT_OBJECT
