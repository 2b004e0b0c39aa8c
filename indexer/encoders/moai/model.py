"""The MoAI-7B architecture in torch, written for moair (arXiv 2403.07508; facts in
``shared/reference/moai-e5v.md`` and ``tests/data/moai7b/NOTES.md``).

Module and attribute names are chosen so that ``state_dict()`` names equal the published
checkpoint's (``model.layers.7.attention.moai_CA_img_aux.linear_q.0.weight`` ...), which lets the
loader (``indexer.encoders.moai.weights``) read the safetensors shards by name. The pieces:

- ``model``: an InternLM2 decoder (fused grouped-query ``wqkv``, RMSNorm, SwiGLU ``w1/w3/w2``,
  rotary positions). Every projection is a Partial LoRA linear: the low-rank update is added at
  image-token rows only.
- ``vit``: CLIP ViT-L/14 (transformers' ``CLIPVisionModel``) at 490 x 490 with 35 x 35 patch
  positions; features are the last encoder layer's patch tokens (no CLS, before the final norm).
- ``vision_proj``: Linear-GELU-Linear into the language width.
- ``moai_compressor``: a Perceiver resampler turning the auxiliary tokens (the verbalization's
  word embeddings and the projected panoptic colour map) into 64 tokens.
- The MoAI-Mixer inside the attention of some layers (7, 15, 23, 31 of MoAI-7B): per token, a
  softmax gate mixes three low-rank attention experts for image tokens (to auxiliary tokens, to
  language tokens, to themselves) and three for language tokens (to auxiliary, to image, to
  themselves). It runs while reading a prompt that holds an image, not while generating.

Sizes come from an ``Architecture`` read off the checkpoint's tensor shapes and config, so the same
code builds MoAI-7B and the tiny test models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """Every size the modules need (see ``weights.architecture`` for where each comes from)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    embedding_rows: int  # the vocabulary plus the ``<image>`` token
    output_rows: int
    rms_eps: float
    rope_theta: float
    rope_dynamic_factor: float | None  # InternLM2's dynamic NTK scaling, None for plain rotary
    max_positions: int
    lora_rank: int
    mixer_layers: tuple[int, ...]
    mixer_rank: int
    mixer_heads: int
    compressor_depth: int
    compressor_heads: int
    compressor_head_dim: int
    compressor_latents: int
    compressor_ff: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int
    vision_patch: int
    image_size: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.vision_patch) ** 2


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)


class PartialLoRALinear(nn.Module):
    """A linear layer whose low-rank update (``Plora_B @ Plora_A``, scale alpha / r = 1 in MoAI)
    applies only to the rows marked in ``image_rows`` (InternLM-XComposer2's Partial LoRA)."""

    def __init__(self, inputs: int, outputs: int, rank: int) -> None:
        super().__init__()
        self.Plora_A = nn.Linear(inputs, rank, bias=False)
        self.Plora_B = nn.Linear(rank, outputs, bias=False)
        self.Plora_main = nn.Linear(inputs, outputs, bias=False)

    def forward(self, x: torch.Tensor, image_rows: torch.Tensor | None) -> torch.Tensor:
        out = self.Plora_main(x)
        if image_rows is not None and bool(image_rows.any()):
            out[image_rows] += self.Plora_B(self.Plora_A(x[image_rows]))
        return out


class LowRankAttention(nn.Module):
    """One MoAI-Mixer expert: multi-head attention whose q/k/v/o maps are bias-free rank-r pairs,
    each followed by GELU; returns ``query + attention`` (rows are tokens of one sequence)."""

    def __init__(self, dim: int, rank: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        for name in ("linear_q", "linear_k", "linear_v", "linear_o"):
            setattr(self, name, nn.Sequential(nn.Linear(dim, rank, bias=False), nn.Linear(rank, dim, bias=False)))

    def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        def split(x: torch.Tensor) -> torch.Tensor:  # [n, dim] -> [heads, n, dim / heads]
            return x.reshape(x.shape[0], self.heads, -1).transpose(0, 1)

        q, k, v = (
            split(F.gelu(layer(x)))
            for layer, x in ((self.linear_q, query), (self.linear_k, keys), (self.linear_v, keys))
        )
        mixed = F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(query.shape)
        return query + F.gelu(self.linear_o(mixed))


MIXER_EXPERTS = (
    "moai_CA_img_aux",
    "moai_CA_img_lang",
    "moai_SA_img",
    "moai_CA_lang_aux",
    "moai_CA_lang_img",
    "moai_SA_lang",
)


def rotary(positions: torch.Tensor, arch: Architecture, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables ([n, head_dim]) for absolute positions; InternLM2's dynamic NTK scaling
    raises the base only past ``max_positions``."""
    dim, base, length = arch.head_dim, arch.rope_theta, int(positions.max()) + 1
    if arch.rope_dynamic_factor is not None and length > arch.max_positions:
        factor = arch.rope_dynamic_factor
        base = base * ((factor * length / arch.max_positions) - (factor - 1)) ** (dim / (dim - 2))
    inverse = 1.0 / (base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    angles = positions.to(device=device, dtype=torch.float32)[:, None] * inverse[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


class Attention(nn.Module):
    """InternLM2 grouped-query attention with a fused ``wqkv`` whose rows are grouped per KV head
    as [queries of the group, key, value]; with the mixer's experts and gates in mixer layers."""

    def __init__(self, arch: Architecture, with_mixer: bool) -> None:
        super().__init__()
        self.arch = arch
        self.groups = arch.heads // arch.kv_heads
        self.wqkv = PartialLoRALinear(arch.hidden, (arch.heads + 2 * arch.kv_heads) * arch.head_dim, arch.lora_rank)
        self.wo = PartialLoRALinear(arch.heads * arch.head_dim, arch.hidden, arch.lora_rank)
        self.with_mixer = with_mixer
        if with_mixer:
            for name in MIXER_EXPERTS:
                setattr(self, name, LowRankAttention(arch.hidden, arch.mixer_rank, arch.mixer_heads))
            self.moai_GA_img = nn.Linear(arch.hidden, 3)
            self.moai_GA_lang = nn.Linear(arch.hidden, 3)

    def mix(self, hidden: torch.Tensor, step: Step) -> torch.Tensor:
        """MoAI-Mixer, per sequence: image and language tokens are replaced by the gate-weighted sum
        of their stream's three experts (whose outputs include the residual)."""
        hidden = hidden.clone()
        for row in range(hidden.shape[0]):
            image_rows, language_rows = step.image_rows[row], step.language_rows[row]
            if not bool(image_rows.any()):
                continue
            image, language, aux = hidden[row][image_rows], hidden[row][language_rows], step.aux[row]
            image_gate = F.softmax(self.moai_GA_img(image).float(), dim=-1).to(hidden.dtype)
            language_gate = F.softmax(self.moai_GA_lang(language).float(), dim=-1).to(hidden.dtype)
            hidden[row][image_rows] = (
                image_gate[:, :1] * self.moai_CA_img_aux(image, aux)
                + image_gate[:, 1:2] * self.moai_CA_img_lang(image, language)
                + image_gate[:, 2:] * self.moai_SA_img(image, image)
            )
            hidden[row][language_rows] = (
                language_gate[:, :1] * self.moai_CA_lang_aux(language, aux)
                + language_gate[:, 1:2] * self.moai_CA_lang_img(language, image)
                + language_gate[:, 2:] * self.moai_SA_lang(language, language)
            )
        return hidden

    def forward(self, hidden, step: Step, cache: tuple[torch.Tensor, torch.Tensor] | None):
        if self.with_mixer and step.aux is not None:
            hidden = self.mix(hidden, step)
        batch, length, _ = hidden.shape
        qkv = self.wqkv(hidden, step.image_rows).view(
            batch, length, self.arch.kv_heads, self.groups + 2, self.arch.head_dim
        )
        queries = qkv[..., : self.groups, :].reshape(batch, length, self.arch.heads, self.arch.head_dim).transpose(1, 2)
        keys, values = qkv[..., -2, :].transpose(1, 2), qkv[..., -1, :].transpose(1, 2)
        queries, keys = _rotate(queries, step.cos, step.sin), _rotate(keys, step.cos, step.sin)
        if cache is not None:
            keys, values = torch.cat((cache[0], keys), dim=2), torch.cat((cache[1], values), dim=2)
        new_cache = (keys, values)
        keys, values = keys.repeat_interleave(self.groups, dim=1), values.repeat_interleave(self.groups, dim=1)
        out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=step.allowed)
        out = out.transpose(1, 2).reshape(batch, length, -1)
        return self.wo(out, step.image_rows), new_cache


class FeedForward(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.w1 = PartialLoRALinear(arch.hidden, arch.intermediate, arch.lora_rank)
        self.w3 = PartialLoRALinear(arch.hidden, arch.intermediate, arch.lora_rank)
        self.w2 = PartialLoRALinear(arch.intermediate, arch.hidden, arch.lora_rank)

    def forward(self, x: torch.Tensor, image_rows: torch.Tensor | None) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x, image_rows)) * self.w3(x, image_rows), image_rows)


class DecoderLayer(nn.Module):
    def __init__(self, arch: Architecture, with_mixer: bool) -> None:
        super().__init__()
        self.attention = Attention(arch, with_mixer)
        self.feed_forward = FeedForward(arch)
        self.attention_norm = RMSNorm(arch.hidden, arch.rms_eps)
        self.ffn_norm = RMSNorm(arch.hidden, arch.rms_eps)

    def forward(self, hidden, step: Step, cache):
        attended, new_cache = self.attention(self.attention_norm(hidden), step, cache)
        hidden = hidden + attended
        return hidden + self.feed_forward(self.ffn_norm(hidden), step.image_rows), new_cache


class Decoder(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(arch.embedding_rows, arch.hidden)
        self.layers = nn.ModuleList(DecoderLayer(arch, i in arch.mixer_layers) for i in range(arch.layers))
        self.norm = RMSNorm(arch.hidden, arch.rms_eps)


class PerceiverAttention(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        inner = arch.compressor_heads * arch.compressor_head_dim
        self.heads = arch.compressor_heads
        self.norm_media = nn.LayerNorm(arch.hidden)
        self.norm_latents = nn.LayerNorm(arch.hidden)
        self.to_q = nn.Linear(arch.hidden, inner, bias=False)
        self.to_kv = nn.Linear(arch.hidden, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, arch.hidden, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        media, latents = self.norm_media(media), self.norm_latents(latents)
        keys, values = self.to_kv(torch.cat((media, latents), dim=1)).chunk(2, dim=-1)

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.to_q(latents)), split(keys), split(values))
        return self.to_out(out.transpose(1, 2).reshape(latents.shape[0], latents.shape[1], -1))


class Compressor(nn.Module):
    """MoAI-Compressor: learned latents read the auxiliary tokens (keys and values are the
    auxiliary tokens followed by the latents) through ``depth`` attention + feed-forward blocks."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(arch.compressor_latents, arch.hidden))
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PerceiverAttention(arch),
                    nn.Sequential(
                        nn.LayerNorm(arch.hidden),
                        nn.Linear(arch.hidden, arch.compressor_ff, bias=False),
                        nn.GELU(),
                        nn.Linear(arch.compressor_ff, arch.hidden, bias=False),
                    ),
                ]
            )
            for _ in range(arch.compressor_depth)
        )
        self.norm = nn.LayerNorm(arch.hidden)

    def forward(self, aux: torch.Tensor) -> torch.Tensor:
        latents = self.latents.unsqueeze(0).expand(aux.shape[0], -1, -1)
        for attention, feed_forward in self.layers:
            latents = attention(aux, latents) + latents
            latents = feed_forward(latents) + latents
        return self.norm(latents)


class VisionTower(nn.Module):
    """CLIP's vision transformer; the features MoAI uses are the last layer's patch tokens."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel

        config = CLIPVisionConfig(
            hidden_size=arch.vision_hidden,
            intermediate_size=arch.vision_intermediate,
            num_hidden_layers=arch.vision_layers,
            num_attention_heads=arch.vision_heads,
            patch_size=arch.vision_patch,
            image_size=arch.image_size,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
        )
        self.vision_tower = CLIPVisionModel(config)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision_tower(pixel_values=pixels).last_hidden_state[:, 1:]


@dataclass
class Step:
    """What every layer needs for one forward pass over a (left-padded) batch."""

    allowed: torch.Tensor  # [batch, 1, new, all] True where a token may attend
    cos: torch.Tensor
    sin: torch.Tensor
    image_rows: torch.Tensor | None  # [batch, new] image-token positions (Partial LoRA, mixer)
    language_rows: torch.Tensor | None  # [batch, new] other real tokens (mixer)
    aux: torch.Tensor | None  # [batch, latents, hidden] compressed auxiliary tokens; None: no mixer


class MoAIModel(nn.Module):
    """MoAI-7B's modules under the checkpoint's names (``model``, ``output``, ``vit``,
    ``vision_proj``, ``moai_compressor``)."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        self.model = Decoder(arch)
        self.output = nn.Linear(arch.hidden, arch.output_rows, bias=False)
        self.vit = VisionTower(arch)
        self.vision_proj = nn.Sequential(
            nn.Linear(arch.vision_hidden, arch.hidden), nn.GELU(), nn.Linear(arch.hidden, arch.hidden)
        )
        self.moai_compressor = Compressor(arch)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """[batch, image tokens, hidden] for normalised 490 x 490 images."""
        return self.vision_proj(self.vit(pixels.to(self.output.weight.dtype)))

    def forward(
        self,
        embeds: torch.Tensor,
        real: torch.Tensor,
        image_rows: torch.Tensor | None = None,
        aux: torch.Tensor | None = None,
        cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Final-norm hidden states of the new positions and the updated key/value cache.

        ``embeds`` [batch, new, hidden] are the new positions' input embeddings, ``real``
        [batch, all] marks non-padding positions of the whole sequence so far (cache included),
        ``image_rows`` [batch, new] the image tokens, ``aux`` the compressed auxiliary tokens (the
        mixer runs when they are given)."""
        batch, new = embeds.shape[:2]
        past = 0 if cache is None else cache[0][0].shape[2]
        total = past + new
        # Rotary positions count every slot, padding included, as MoAI's do; with relative
        # rotary attention, left padding does not change the scores between real tokens.
        cos, sin = rotary(torch.arange(past, total), self.arch, embeds.device, embeds.dtype)
        causal = torch.ones(new, total, dtype=torch.bool, device=embeds.device).tril(past)
        allowed = causal[None] & real[:, None, :]
        slots = torch.arange(new, device=embeds.device)
        allowed[:, slots, past + slots] = True  # a padding slot attends to itself: no empty softmax
        real_new = real[:, past:]
        step = Step(
            allowed=allowed[:, None],
            cos=cos,
            sin=sin,
            image_rows=image_rows,
            language_rows=None if image_rows is None else real_new & ~image_rows,
            aux=aux,
        )
        hidden, new_cache = embeds, []
        for number, layer in enumerate(self.model.layers):
            hidden, layer_cache = layer(hidden, step, None if cache is None else cache[number])
            new_cache.append(layer_cache)
        return self.model.norm(hidden), new_cache


def interpolate_positions(weight: torch.Tensor, grid: int) -> torch.Tensor:
    """CLIP position embeddings (CLS row first) resized bicubically to a ``grid`` x ``grid`` patch
    grid, as MoAI turns CLIP-L/336's 24 x 24 into 35 x 35 for 490-pixel images."""
    side = math.isqrt(weight.shape[0] - 1)
    patches = weight[1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat((weight[:1].float(), patches.permute(0, 2, 3, 1).reshape(grid * grid, -1))).to(weight.dtype)
