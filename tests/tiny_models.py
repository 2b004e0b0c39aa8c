"""Tiny, randomly initialised CLIP, SigLIP and LLaVA-NeXT checkpoints in the real Hugging Face on-disk format.

Real CLIP / SigLIP checkpoints are hundreds of megabytes and users download them themselves; the
test environment has no network access to the Hugging Face hub. These helpers build checkpoints of
the *real architectures* (``CLIPModel`` / ``SiglipModel``) with tiny configs and random (seeded)
weights, plus their *real* processors (a byte-level BPE ``CLIPTokenizer`` built from a generated
``vocab.json`` + ``merges.txt``; a SentencePiece ``SiglipTokenizer`` with an ``spiece.model``
trained offline on a small embedded text; ``CLIPImageProcessor`` / ``SiglipImageProcessor``), and
save them with ``save_pretrained``. The resulting folder loads back through the ordinary API, e.g.
``AutoModel.from_pretrained(folder)`` and ``AutoProcessor.from_pretrained(folder)`` with
``HF_HUB_OFFLINE=1``, so tests exercise the real loading path without downloadable weights.

The embeddings are meaningless (random weights): tests may rely on shapes, finiteness and
determinism, never on retrieval quality.

Folder contents:

* CLIP: ``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
  ``tokenizer.json``, ``tokenizer_config.json``, ``vocab.json``, ``merges.txt``
  (embedding dimension ``CLIP_DIM``).
* SigLIP: ``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
  ``spiece.model``, ``tokenizer_config.json`` (embedding dimension ``SIGLIP_DIM``; text is padded
  to ``max_length`` = ``SIGLIP_TEXT_LENGTH`` tokens, as SigLIP expects).
* LLaVA-NeXT (``LlavaNextForConditionalGeneration``: a Llama text model and a CLIP vision tower, the
  architecture of E5-V, ``royokong/e5-v``): ``config.json``, ``generation_config.json``,
  ``model.safetensors``, ``preprocessor_config.json`` (``LlavaNextImageProcessor``, anyres tiling),
  ``processor_config.json`` (``LlavaNextProcessor``), ``chat_template.jinja``, ``tokenizer.json``
  (Llama-3-style byte-level BPE with ``<image>``), ``tokenizer_config.json`` (with the Llama-3
  chat template ``LLAMA3_CHAT_TEMPLATE``); hidden size ``LLAVA_NEXT_DIM``.
* OWLv2 (``Owlv2ForObjectDetection``, the architecture of ``google/owlv2-base-patch16-ensemble``):
  ``config.json``, ``model.safetensors``, ``preprocessor_config.json`` (``Owlv2ImageProcessor``:
  pads to a square, resizes to ``OWLV2_IMAGE_SIZE``), and the CLIP tokenizer files of the CLIP
  checkpoint (``tokenizer.json``, ``tokenizer_config.json``, ``vocab.json``, ``merges.txt``; padded
  with ``!`` to ``OWLV2_TEXT_LENGTH`` tokens, as OWL-ViT's); ``OWLV2_BOXES`` boxes per image.
* Mask2Former (``Mask2FormerForUniversalSegmentation`` with a Swin backbone, the architecture of
  ``facebook/mask2former-swin-base-coco-panoptic``): ``config.json`` (the 133 COCO panoptic labels
  ``COCO_PANOPTIC_LABELS`` as ``id2label``), ``model.safetensors``, ``preprocessor_config.json``
  (``Mask2FormerImageProcessor``, images resized to ``MASK2FORMER_IMAGE_SIZE`` squared); no tokenizer;
  ``MASK2FORMER_QUERIES`` queries.

All builders are deterministic and idempotent: a folder that already has ``config.json`` is
returned untouched.
"""

from __future__ import annotations

import collections
import io
import json
import tempfile
from pathlib import Path

CLIP_DIM = 16  # CLIPConfig.projection_dim
CLIP_TEXT_LENGTH = 32  # text max_position_embeddings == tokenizer model_max_length
SIGLIP_DIM = 32  # SigLIP has no projection: the embedding is the (shared) hidden size
SIGLIP_TEXT_LENGTH = 16  # text max_position_embeddings == tokenizer model_max_length
IMAGE_SIZE = 32
PATCH_SIZE = 8
SEED = 0

# Small English text: BPE merges (CLIP) and the SentencePiece model (SigLIP) are learnt from it.
_TEXT = """\
a dog on a beach. two cats on a sofa. a photo of a person riding a bicycle in the city.
a red car parked on the street. the sky is blue and the sea is calm. a cat sleeping on a bed.
children playing football in the park. a bowl of fruit on the kitchen table.
mountains covered in snow under a clear sky. a woman holding an umbrella in the rain.
an old man reading a newspaper on a bench. a plate of food with rice and vegetables.
a black and white photo of a bridge over a river. a group of people at a wedding.
a small boat on a lake at sunset. a bird sitting on a branch of a tree.
a train arriving at the station. a horse running in a green field. a cup of coffee and a book.
a girl with a yellow dress smiling at the camera. flowers in a garden in spring.
a night view of the city with bright lights. a birthday cake with candles on a table.
the dog is playing with a ball on the grass. three people walking along the shore.
"""

_CLIP_BOS = "<|startoftext|>"
_CLIP_EOS = "<|endoftext|>"
_CLIP_MERGES = 300


def _bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of byte-level BPE (GPT-2 / CLIP)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, map(chr, cs)))


def _clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style byte-level BPE vocabulary and merges learnt from ``_TEXT``.

    Like the real CLIP vocabulary it holds all 256 byte symbols with and without the ``</w>``
    end-of-word suffix, so any text (including non-Latin scripts) tokenizes without unknowns.
    """
    byte_char = _bytes_to_unicode()
    words = collections.Counter("".join(ch if ch.isalpha() else " " for ch in _TEXT.lower()).split())
    symbols: dict[str, tuple[str, ...]] = {}
    for word in words:
        chars = [byte_char[b] for b in word.encode("utf-8")]
        symbols[word] = tuple(chars[:-1]) + (chars[-1] + "</w>",)
    merges = _learn_merges(words, symbols, _CLIP_MERGES)
    alphabet = [byte_char[b] for b in range(256)]
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges] + [_CLIP_BOS, _CLIP_EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    return vocab, merges


def _learn_merges(
    words: collections.Counter[str], symbols: dict[str, tuple[str, ...]], count: int
) -> list[tuple[str, str]]:
    """Learn up to ``count`` BPE merges: repeatedly merge the most frequent adjacent symbol pair.

    ``words`` counts the pre-tokenized words; ``symbols`` maps each word to its initial symbols and
    is updated in place. Ties are broken deterministically, so the merges are reproducible.
    """
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for word, seq in symbols.items():
            for pair in zip(seq, seq[1:]):
                pairs[pair] += words[word]
        if not pairs:
            break
        best = max(pairs.items(), key=lambda item: (item[1], item[0]))[0]  # ties broken deterministically
        merges.append(best)
        for word, seq in symbols.items():
            merged: list[str] = []
            i = 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    merged.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    merged.append(seq[i])
                    i += 1
            symbols[word] = tuple(merged)
    return merges


def _save_processor_parts(folder: Path, tokenizer, image_processor) -> None:
    """Save tokenizer and image processor as separate files, the layout of the hub checkpoints.

    ``ProcessorMixin.save_pretrained`` in transformers 5 folds the image processor into a single
    ``processor_config.json``; the published CLIP / SigLIP repositories (what users download) have
    ``preprocessor_config.json`` plus tokenizer files instead, and ``AutoProcessor`` assembles the
    processor from those (``CLIPProcessor`` / ``SiglipProcessor``, found via ``config.json``).
    """
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)


def _save_model(model_class, config, folder: Path, init=None) -> None:
    """Seeded random init (without disturbing the caller's RNG state), saved as safetensors.

    ``init(model)``, if given, re-initialises some weights under the same seeded RNG.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = model_class(config).eval()
        if init is not None:
            with torch.no_grad():
                init(model)
    model.save_pretrained(folder, safe_serialization=True)


def _build(folder: Path, write) -> Path:
    """Run ``write(staging)`` and move the result into ``folder``, ``config.json`` last.

    A folder with ``config.json`` is therefore always complete, and is returned as is.
    """
    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as staging:
        write(Path(staging))
        files = sorted(Path(staging).iterdir(), key=lambda p: p.name == "config.json")
        for path in files:
            path.replace(folder / path.name)
    return folder


def make_tiny_clip(folder: Path) -> Path:
    """Build (once) a tiny random ``CLIPModel`` + ``CLIPProcessor`` checkpoint in ``folder``."""
    return _build(folder, _write_tiny_clip)


def _write_tiny_clip(folder: Path) -> None:
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    vocab, merges = _clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_TEXT_LENGTH)
    # The Pil backend is used because torchvision is not a dependency; it saves as
    # "image_processor_type": "CLIPImageProcessor", exactly like the real checkpoints.
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": CLIP_TEXT_LENGTH,
            # the text model pools at the first eos token, so these must match the tokenizer
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        projection_dim=CLIP_DIM,
    )
    _save_model(CLIPModel, config, folder)
    _save_processor_parts(folder, tokenizer, image_processor)
    _write_clip_bpe_files(folder, vocab, merges)


def _write_clip_bpe_files(folder: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    """The slow-tokenizer files of a CLIP tokenizer, next to its ``tokenizer.json``.

    The hub checkpoints (CLIP, OWL-ViT / OWLv2) carry them; save_pretrained in transformers 5 only
    writes tokenizer.json, so they are added for a faithful layout (same vocabulary and merges).
    """
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")


def train_spiece(**options) -> bytes:
    """A SentencePiece model trained on the embedded text with ``options`` (type, size, special ids)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_TEXT.splitlines()),
        model_writer=model,
        hard_vocab_limit=False,  # the text is small: take what it yields rather than fail
        character_coverage=1.0,  # every character of the text; anything else (e.g. Hangul) is <unk>
        num_threads=1,
        minloglevel=2,
        **options,
    )
    return model.getvalue()


def _siglip_spiece() -> bytes:
    """A tiny unigram SentencePiece model with SigLIP's (T5's) special ids: <pad>=0, </s>=1, <unk>=2."""
    return train_spiece(
        model_type="unigram",
        vocab_size=256,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
    )


def make_tiny_siglip(folder: Path) -> Path:
    """Build (once) a tiny random ``SiglipModel`` + ``SiglipProcessor`` checkpoint in ``folder``."""
    return _build(folder, _write_tiny_siglip)


def _write_tiny_siglip(folder: Path) -> None:
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        spiece = Path(scratch) / "spiece.model"
        spiece.write_bytes(_siglip_spiece())
        tokenizer = SiglipTokenizer(vocab_file=str(spiece), model_max_length=SIGLIP_TEXT_LENGTH)
        _save_processor_parts(
            folder, tokenizer, SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
        )
    config = SiglipConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": SIGLIP_DIM,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": SIGLIP_TEXT_LENGTH,
            # SigLIP pools the last position, so text must be padded to max_length with pad = </s>
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": None,
        },
        vision_config={
            "hidden_size": SIGLIP_DIM,  # no projection in SigLIP: both towers share this width
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
    )
    _save_model(SiglipModel, config, folder)


# --- LLaVA-NeXT (the architecture of E5-V, ``royokong/e5-v``: Llama-3-8B text + CLIP ViT-L/14-336) ---

LLAVA_NEXT_DIM = 32  # the Llama hidden size: E5-V's embedding is the last token's last hidden state
LLAVA_NEXT_TEXT_LENGTH = 2048  # text max_position_embeddings == tokenizer model_max_length
# anyres canvases, (height, width): the published pinpoints ([[336, 672], [672, 336], [672, 672],
# [1008, 336], [336, 1008]]) scaled from the 336-pixel tile to IMAGE_SIZE (1x2, 2x1, 2x2, 3x1, 1x3
# tiles), plus a 3x3 canvas. Real photos dwarf 32-pixel tiles, so almost all of them land on the
# largest canvas; on 2x2 (8x8 patches) most landscape photos would also expand to the same number
# of <image> tokens, on 3x3 photos of different aspect ratios get different counts (as they do with
# the real tiles), so a batch of image prompts needs padding.
LLAVA_NEXT_PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96], [96, 96]]
LLAMA3_BOS = "<|begin_of_text|>"
LLAMA3_EOT = "<|eot_id|>"  # end of turn: Llama-3-Instruct's (and E5-V's) eos
LLAVA_IMAGE_TOKEN = "<image>"
LLAVA_PAD = "<pad>"
# Llama-3's special tokens come after the BPE vocabulary; llava-hf's Llama-3 LLaVA-NeXT appends
# <image> (its image_token_index, 128256) and a <pad> token after them.
_LLAMA3_SPECIAL = [LLAMA3_BOS, "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", LLAMA3_EOT]
_LLAMA3_MERGES = 300
# Llama-3's (tiktoken cl100k-style) pre-tokenization: words with their leading space, digits in
# groups of up to three, punctuation runs, newlines, whitespace.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# The Llama-3-Instruct chat format (bos, then a header and an <|eot_id|> per turn, then the assistant
# header as the generation prompt). Content is a string, or a list of {"type": "image"} /
# {"type": "text", "text": ...} parts (what processor.apply_chat_template passes), an image part
# rendering as <image>. Unlike Meta's template it does not trim the content: E5-V's prompts end
# with "in one word: " and the trailing space is part of the prompt.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


def _llama3_tokenizer():
    """A Llama-3-style byte-level BPE ``tokenizers.Tokenizer`` learnt from ``_TEXT``.

    Like Llama-3's tokenizer.json: regex split + byte-level pre-tokenization (no prefix space),
    all 256 byte symbols in the vocabulary (so any text, Korean included, tokenizes without
    unknowns), ``ignore_merges``, the special tokens after the BPE vocabulary, and a post-processor
    that prepends ``<|begin_of_text|>``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    words = collections.Counter(piece for piece, _ in pre_tokenizer.pre_tokenize_str(_TEXT))
    merges = _learn_merges(words, {word: tuple(word) for word in words}, _LLAMA3_MERGES)
    byte_char = _bytes_to_unicode()
    tokens = [byte_char[b] for b in range(256)] + ["".join(m) for m in merges]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}

    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, ignore_merges=True, fuse_unk=False, byte_fallback=False)
    )
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    specials = _LLAMA3_SPECIAL + [LLAVA_IMAGE_TOKEN, LLAVA_PAD]
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{LLAMA3_BOS}:0 $A:0",
                pair=f"{LLAMA3_BOS}:0 $A:0 {LLAMA3_BOS}:1 $B:1",
                special_tokens=[(LLAMA3_BOS, tokenizer.token_to_id(LLAMA3_BOS))],
            ),
        ]
    )
    return tokenizer


def make_tiny_llava_next(folder: Path) -> Path:
    """Build (once) a tiny random ``LlavaNextForConditionalGeneration`` + ``LlavaNextProcessor`` checkpoint."""
    return _build(folder, _write_tiny_llava_next)


def _write_tiny_llava_next(folder: Path) -> None:
    from transformers import (
        GenerationConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
        PreTrainedTokenizerFast,
    )

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_llama3_tokenizer(),
        bos_token=LLAMA3_BOS,
        eos_token=LLAMA3_EOT,
        pad_token=LLAVA_PAD,
        extra_special_tokens={"image_token": LLAVA_IMAGE_TOKEN},
        model_max_length=LLAVA_NEXT_TEXT_LENGTH,
        chat_template=LLAMA3_CHAT_TEMPLATE,
        # Llama-3 says True, which transformers 5 ignores for BPE tokenizers (with a warning)
        clean_up_tokenization_spaces=False,
    )
    image_processor = LlavaNextImageProcessorPil(  # saved as "LlavaNextImageProcessor"
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_grid_pinpoints=LLAVA_NEXT_PINPOINTS,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    # "default": the CLIP tower's CLS feature is dropped, so an image tile gives one <image> token
    # per patch; num_additional_image_tokens=1 counts that CLS (as in llava-hf's processor_config).
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAMA3_CHAT_TEMPLATE,
    )
    config = LlavaNextConfig(
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": LLAVA_NEXT_DIM,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,  # grouped-query attention, as in Llama-3 (32 heads, 8 KV heads)
            "max_position_embeddings": LLAVA_NEXT_TEXT_LENGTH,
            "rms_norm_eps": 1e-5,
            "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
            "tie_word_embeddings": False,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "projection_dim": 32,
            "hidden_act": "quick_gelu",
        },
        image_token_index=tokenizer.convert_tokens_to_ids(LLAVA_IMAGE_TOKEN),
        image_grid_pinpoints=LLAVA_NEXT_PINPOINTS,
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    _save_model(LlavaNextForConditionalGeneration, config, folder)
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ).save_pretrained(folder)
    _save_llava_next_processor(folder, processor)


def _save_llava_next_processor(folder: Path, processor) -> None:
    """Save the processor in the layout of the published LLaVA-NeXT checkpoints.

    ``preprocessor_config.json`` (the image processor), ``processor_config.json`` (only the
    processor's own settings: patch size, feature-select strategy, extra image tokens, image token),
    ``chat_template.jinja`` (read by the processor) and the tokenizer files, whose
    ``tokenizer_config.json`` carries the same chat template, as Llama-3's does.
    ``ProcessorMixin.save_pretrained`` in transformers 5 would fold the image processor into
    ``processor_config.json`` instead; ``AutoProcessor`` loads either layout.
    """
    processor.tokenizer.save_pretrained(folder, save_jinja_files=False)
    # transformers 5 writes its own class name; Llama-3 checkpoints name the (v4) fast tokenizer,
    # which transformers 5 maps to the same TokenizersBackend.
    path = folder / "tokenizer_config.json"
    tokenizer_config = json.loads(path.read_text(encoding="utf-8"))
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    processor.image_processor.save_pretrained(folder)
    settings = processor.to_dict()
    settings.pop("image_processor")
    settings.pop("tokenizer", None)
    settings.pop("chat_template", None)
    (folder / "processor_config.json").write_text(
        json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (folder / "chat_template.jinja").write_text(processor.chat_template, encoding="utf-8")


# --- OWLv2 (the architecture of ``google/owlv2-base-patch16-ensemble``: CLIP towers + box/class heads) ---

OWLV2_IMAGE_SIZE = 64  # vision image_size == the processor's square size (960 in the published checkpoint)
OWLV2_PATCH_SIZE = 16
OWLV2_BOXES = (OWLV2_IMAGE_SIZE // OWLV2_PATCH_SIZE) ** 2  # one box per patch: 4 x 4
OWLV2_TEXT_LENGTH = 16  # text max_position_embeddings == tokenizer model_max_length, as published
OWLV2_DIM = 32  # text and vision hidden size; projection_dim must equal the text width (class head)
_OWLV2_PAD = "!"  # OWL-ViT / OWLv2 pad queries with "!" to max_length (CLIP pads with <|endoftext|>)


def make_tiny_owlv2(folder: Path) -> Path:
    """Build (once) a tiny random ``Owlv2ForObjectDetection`` + ``Owlv2Processor`` checkpoint in ``folder``."""
    return _build(folder, _write_tiny_owlv2)


def _owlv2_heads_init(model) -> None:
    """Scale the box / class / objectness heads to unit gain (std = fan_in ** -0.5).

    transformers initialises these heads' linear layers with std 1.0 (the composite config has no
    ``initializer_range``), which saturates the box sigmoid: boxes collapse to zero or full width.
    With unit gain the random boxes stay near their patch and have a positive size, like a trained
    model's, so tests of what consumes them see plausible boxes.
    """
    import torch

    for head in (model.class_head, model.box_head, model.objectness_head):
        for module in head.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=module.in_features**-0.5)
                torch.nn.init.zeros_(module.bias)


def _write_tiny_owlv2(folder: Path) -> None:
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil

    vocab, merges = _clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=OWLV2_TEXT_LENGTH, pad_token=_OWLV2_PAD)
    # The Pil backend (no torchvision) saves as "image_processor_type": "Owlv2ImageProcessor"; it pads
    # each image to a square (bottom / right) and resizes with scipy, as the published processor does.
    image_processor = Owlv2ImageProcessorPil(size={"height": OWLV2_IMAGE_SIZE, "width": OWLV2_IMAGE_SIZE})
    config = Owlv2Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": OWLV2_DIM,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": OWLV2_TEXT_LENGTH,
            # the text model pools at argmax(input_ids): <|endoftext|> must have the largest id (it has)
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": OWLV2_DIM,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": OWLV2_IMAGE_SIZE,
            "patch_size": OWLV2_PATCH_SIZE,
        },
        projection_dim=OWLV2_DIM,
    )
    _save_model(Owlv2ForObjectDetection, config, folder, init=_owlv2_heads_init)
    _save_processor_parts(folder, tokenizer, image_processor)
    _write_clip_bpe_files(folder, vocab, merges)


# --- Mask2Former (the architecture of ``facebook/mask2former-swin-base-coco-panoptic``: Swin backbone) ---

MASK2FORMER_IMAGE_SIZE = 64  # the processor resizes to this square (384 in the published checkpoint)
MASK2FORMER_QUERIES = 10  # num_queries (100 published); the class head has 133 labels + "no object"
# The COCO panoptic categories in the order of the published checkpoint's id2label (detectron2's
# contiguous ids): 80 things (0-79), then 53 stuff classes (80-132), with their COCO panoptic
# names ("-stuff", "-other", "-merged" suffixes included).
COCO_PANOPTIC_THINGS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
COCO_PANOPTIC_STUFF = (
    "banner", "blanket", "bridge", "cardboard", "counter", "curtain", "door-stuff", "floor-wood", "flower",
    "fruit", "gravel", "house", "light", "mirror-stuff", "net", "pillow", "platform", "playingfield",
    "railroad", "river", "road", "roof", "sand", "sea", "shelf", "snow", "stairs", "tent", "towel",
    "wall-brick", "wall-stone", "wall-tile", "wall-wood", "water-other", "window-blind", "window-other",
    "tree-merged", "fence-merged", "ceiling-merged", "sky-other-merged", "cabinet-merged", "table-merged",
    "floor-other-merged", "pavement-merged", "mountain-merged", "grass-merged", "dirt-merged", "paper-merged",
    "food-other-merged", "building-other-merged", "rock-merged", "wall-other-merged", "rug-merged",
)  # fmt: skip
COCO_PANOPTIC_LABELS = COCO_PANOPTIC_THINGS + COCO_PANOPTIC_STUFF  # id2label[i] == COCO_PANOPTIC_LABELS[i]


def make_tiny_mask2former(folder: Path) -> Path:
    """Build (once) a tiny random ``Mask2FormerForUniversalSegmentation`` (Swin) + image processor in ``folder``."""
    return _build(folder, _write_tiny_mask2former)


def _write_tiny_mask2former(folder: Path) -> None:
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessorPil

    # Saved as "image_processor_type": "Mask2FormerImageProcessor"; like the published COCO
    # checkpoints it resizes to a fixed square (padding to a multiple of size_divisor is then a no-op).
    image_processor = Mask2FormerImageProcessorPil(
        size={"height": MASK2FORMER_IMAGE_SIZE, "width": MASK2FORMER_IMAGE_SIZE},
        size_divisor=32,
        ignore_index=255,
        num_labels=len(COCO_PANOPTIC_LABELS),
        do_reduce_labels=False,
    )
    config = Mask2FormerConfig(
        backbone_config={
            "model_type": "swin",
            "image_size": MASK2FORMER_IMAGE_SIZE,
            "patch_size": 4,
            "embed_dim": 16,  # stage widths 16, 32, 64, 128 at strides 4, 8, 16, 32
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 2, 2],
            "window_size": 4,
            "mlp_ratio": 2.0,
            "drop_path_rate": 0.0,
            "out_features": ["stage1", "stage2", "stage3", "stage4"],
        },
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=64,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=64,
        num_queries=MASK2FORMER_QUERIES,
        id2label=dict(enumerate(COCO_PANOPTIC_LABELS)),
    )
    _save_model(Mask2FormerForUniversalSegmentation, config, folder)
    image_processor.save_pretrained(folder)
