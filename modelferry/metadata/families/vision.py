"""Vision towers, counted from a `vision_config` (or a named preset when a config only names one).

ViT blocks all have the same core (q/k/v/o with bias, a two-layer MLP with bias, two LayerNorms);
the towers differ in their stems and heads: CLIP has a class token and a pre-LayerNorm, SigLIP a
biased patch conv and an optional attention-pooling head, Qwen2-VL a 3-D patch conv without bias
and a patch merger, Qwen2.5-VL RMSNorm and a gated MLP, Qwen3-VL learned positions and
"deepstack" mergers, Mllama tiled position embeddings and gated global layers, Llama 4 a
pixel-shuffle adapter.
"""

from __future__ import annotations

from modelferry.metadata.config_view import ConfigView
from modelferry.metadata.families.base import linear, mlp_params

# Towers some configs only name (llava-v1.5 via mm_vision_tower, Phi-3-vision, DeepSeek-VL2,
# Janus): hidden, intermediate, layers, image size, patch size, kind.
VISION_PRESETS: dict[str, tuple[int, int, int, int, int, str]] = {
    "openai/clip-vit-large-patch14-336": (1024, 4096, 24, 336, 14, "clip"),
    "openai/clip-vit-large-patch14": (1024, 4096, 24, 224, 14, "clip"),
    "siglip_so400m_patch14_384": (1152, 4304, 27, 384, 14, "siglip"),
    "siglip_large_patch16_384": (1024, 4096, 24, 384, 16, "siglip"),
}


def vit_block(hidden: int, intermediate: int) -> int:
    """One pre-norm ViT block: biased q/k/v/o, biased fc1/fc2, two LayerNorms."""
    return (
        4 * linear(hidden, hidden) + linear(hidden, intermediate) + linear(intermediate, hidden) + 4 * hidden
    )


def clip_tower(
    *, hidden: int, intermediate: int, layers: int, image: int, patch: int, channels: int = 3
) -> int:
    positions = (image // patch) ** 2 + 1
    stem = (
        channels * patch * patch * hidden + hidden + positions * hidden + 2 * hidden
    )  # conv, class, pos, pre-LN
    return stem + layers * vit_block(hidden, intermediate) + 2 * hidden


def siglip_tower(
    *, hidden: int, intermediate: int, layers: int, image: int, patch: int, head: bool, channels: int = 3
) -> int:
    positions = (image // patch) ** 2
    stem = channels * patch * patch * hidden + hidden + positions * hidden
    total = stem + layers * vit_block(hidden, intermediate) + 2 * hidden
    if head:  # probe, multi-head attention pooling, LayerNorm, MLP
        total += (
            hidden
            + 4 * linear(hidden, hidden)
            + 2 * hidden
            + linear(hidden, intermediate)
            + linear(intermediate, hidden)
        )
    return total


def clip_like(v: ConfigView, *, kind: str, defaults: tuple[int, int, int, int, int]) -> int:
    """A CLIP or SigLIP vision config (transformers defaults for absent keys)."""
    hidden, inter, layers, image, patch = defaults
    args = {
        "hidden": v.req_int("hidden_size", default=hidden),
        "intermediate": v.req_int("intermediate_size", default=inter),
        "layers": v.req_int("num_hidden_layers", default=layers, hi=100_000),
        "image": v.req_int("image_size", default=image),
        "patch": v.req_int("patch_size", default=patch),
        "channels": v.req_int("num_channels", default=3, hi=64),
    }
    if kind == "siglip":
        return siglip_tower(**args, head=v.bool_("vision_use_head", default=True))
    return clip_tower(**args)


def preset_tower(name: str) -> int | None:
    preset = VISION_PRESETS.get(name)
    if preset is None:
        return None
    hidden, inter, layers, image, patch, kind = preset
    if kind == "siglip":
        return siglip_tower(
            hidden=hidden, intermediate=inter, layers=layers, image=image, patch=patch, head=False
        )
    return clip_tower(hidden=hidden, intermediate=inter, layers=layers, image=image, patch=patch)


def qwen2_vl_tower(v: ConfigView) -> int:
    embed = v.req_int("embed_dim", default=1280)
    inter = embed * v.req_int("mlp_ratio", default=4, hi=64)
    out = v.req_int("hidden_size", default=3584)
    merged = embed * v.req_int("spatial_merge_size", default=2, hi=64) ** 2
    patch = _patch_embed(v, width=embed, bias=False)
    blocks = v.req_int("depth", default=32, hi=100_000) * vit_block(embed, inter)
    return patch + blocks + 2 * embed + linear(merged, merged) + linear(merged, out)


def qwen2_5_vl_tower(v: ConfigView) -> int:
    width = v.req_int("hidden_size", default=1280)
    inter = v.req_int("intermediate_size", default=3420)
    out = v.req_int("out_hidden_size", default=3584)
    merged = width * v.req_int("spatial_merge_size", default=2, hi=64) ** 2
    block = 2 * width + linear(width, 3 * width) + linear(width, width) + mlp_params(width, inter, bias=True)
    blocks = v.req_int("depth", default=32, hi=100_000) * block
    return (
        _patch_embed(v, width=width, bias=False)
        + blocks
        + width
        + linear(merged, merged)
        + linear(merged, out)
    )


def qwen3_vl_tower(v: ConfigView) -> int:
    width = v.req_int("hidden_size", default=1152)
    inter = v.req_int("intermediate_size", default=4304)
    out = v.req_int("out_hidden_size", default=3584)
    merged = width * v.req_int("spatial_merge_size", default=2, hi=64) ** 2
    positions = v.req_int("num_position_embeddings", default=2304)
    blocks = v.req_int("depth", default=27, hi=100_000) * vit_block(width, inter)
    merger = 2 * width + linear(merged, merged) + linear(merged, out)
    deepstack = len(v.int_list("deepstack_visual_indexes")) * (
        2 * merged + linear(merged, merged) + linear(merged, out)
    )
    return _patch_embed(v, width=width, bias=True) + positions * width + blocks + merger + deepstack


def _patch_embed(v: ConfigView, *, width: int, bias: bool) -> int:
    channels = v.req_int("in_channels", "in_chans", default=3, hi=64)
    patch = v.req_int("patch_size", "spatial_patch_size", default=14)
    temporal = v.req_int("temporal_patch_size", default=2, hi=64)
    return channels * temporal * patch * patch * width + (width if bias else 0)


def mllama_tower(v: ConfigView) -> int:
    hidden = v.req_int("hidden_size", default=1280)
    inter = v.req_int("intermediate_size", default=5120)
    patch = v.req_int("patch_size", default=14)
    positions = (v.req_int("image_size", default=448) // patch) ** 2 + 1
    tiles = v.req_int("max_num_tiles", default=4, hi=1024)
    ratios = v.raw("supported_aspect_ratios")
    ratio_ids = (len(ratios) if isinstance(ratios, list) else 8) + 1
    stem = (
        v.req_int("num_channels", default=3, hi=64) * patch * patch * hidden + hidden
    )  # conv (no bias), class
    stem += (
        1 + positions * hidden + ratio_ids * tiles * positions * hidden
    )  # gated position + tile embeddings
    stem += 2 * (1 + ratio_ids * tiles * hidden)  # pre/post tile position embeddings, gated
    block = 4 * hidden * hidden + linear(hidden, inter) + linear(inter, hidden) + 4 * hidden
    layers = v.req_int("num_hidden_layers", default=32, hi=100_000) * block
    global_layers = v.req_int("num_global_layers", default=8, hi=100_000) * (block + 2)
    return stem + 4 * hidden + layers + global_layers


def llama4_tower(v: ConfigView) -> int:
    hidden = v.req_int("hidden_size", default=768)
    inter = v.req_int("intermediate_size", default=3072)
    patch = v.req_int("patch_size", default=14)
    positions = (v.req_int("image_size", default=448) // patch) ** 2 + 1
    stem = v.req_int("num_channels", default=3, hi=64) * patch * patch * hidden + hidden + positions * hidden
    blocks = v.req_int("num_hidden_layers", default=34, hi=100_000) * vit_block(hidden, inter)
    proj_in = v.req_int("projector_input_dim", default=4096)
    proj_out = v.req_int("projector_output_dim", default=4096)
    adapter = inter * proj_in + proj_out * proj_out  # pixel-shuffle MLP, no biases
    return stem + 4 * hidden + blocks + adapter
