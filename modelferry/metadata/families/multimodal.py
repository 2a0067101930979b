"""Vision-language models: language model (by its own family) + vision tower + projector.

The language part is estimated by the family its `text_config.model_type` names, so Llava over
Llama and Qwen3-VL over Qwen3 share the text formulas. Only what the checkpoint stores is counted:
llava-v1.5 (liuhaotian) loads its CLIP tower from another repository, so its count excludes it
and a note says so; Janus' VQ image tokenizer is not counted (its shape is not in the config).
"""

from __future__ import annotations

from collections.abc import Callable

from modelferry.metadata.config_view import ConfigView
from modelferry.metadata.families import dense, mla, moe
from modelferry.metadata.families.base import ModelView, linear, read_decoder
from modelferry.metadata.families.registry import Family
from modelferry.metadata.families.vision import (
    clip_like,
    llama4_tower,
    mllama_tower,
    preset_tower,
    qwen2_5_vl_tower,
    qwen2_vl_tower,
    qwen3_vl_tower,
)

CLIP_DEFAULTS = (768, 3072, 12, 224, 32)
SIGLIP_DEFAULTS = (768, 3072, 12, 224, 16)


def _text_view(view: ModelView) -> ModelView:
    """The language model as a view of its own; tie_word_embeddings falls back to the root's."""
    data = dict(view.text.data)
    tied = view.root.raw("tie_word_embeddings")
    if "tie_word_embeddings" not in data and isinstance(tied, bool):
        data["tie_word_embeddings"] = tied
    text = ConfigView(data, source=view.text.source, path=view.text.path)
    return ModelView(
        root=text,
        text=text,
        model_type=view.model_type,
        architecture=None,
        flags=view.flags,
        notes=view.notes,
        derived=view.derived,
    )


def _text_params(view: ModelView, fallback: str) -> int:
    text = _text_view(view)
    model_type = view.text.str_("model_type") if view.text is not view.root else None
    table = {**dense.FAMILIES, **moe.FAMILIES, **mla.FAMILIES}
    family = table.get(_TEXT_ALIASES.get(model_type or "", model_type or "")) or table[fallback]
    return family.estimate(text)


_TEXT_ALIASES = {
    "qwen3_vl_text": "qwen3",
    "qwen3_vl_moe_text": "qwen3_moe",
    "qwen2_vl_text": "qwen2",
    "qwen2_5_vl_text": "qwen2",
    "mistral3": "mistral",
}


def _vision(view: ModelView) -> ConfigView:
    v = view.root.sub("vision_config")
    return v if v is not None else ConfigView({}, source=view.root.source, path="vision_config.")


def _llava(view: ModelView) -> int:
    root = view.root
    text_hidden = view.text.req_int("hidden_size", default=4096)
    if root.has("vision_config"):  # llava-hf layout
        vision = _vision(view)
        vision_hidden = vision.req_int("hidden_size", default=CLIP_DEFAULTS[0])
        kind = "siglip" if "siglip" in (vision.str_("model_type") or "") else "clip"
        tower = clip_like(vision, kind=kind, defaults=SIGLIP_DEFAULTS if kind == "siglip" else CLIP_DEFAULTS)
        bias = root.bool_("multimodal_projector_bias", default=True)
        projector = linear(vision_hidden, text_hidden, bias=bias) + linear(
            text_hidden, text_hidden, bias=bias
        )
        newline = text_hidden if view.model_type != "llava" else 0  # llava_next: image_newline
        return _text_params(view, "llama") + tower + projector + newline
    # liuhaotian layout: Llama at the root, mm_projector in the checkpoint, CLIP tower elsewhere.
    mm_hidden = root.req_int("mm_hidden_size", default=1024)
    kind = root.str_("mm_projector_type", default="linear") or "linear"
    depth = int(kind[3]) if kind.startswith("mlp") and kind[3:4].isdigit() else 1
    projector = linear(mm_hidden, text_hidden) + (depth - 1) * linear(text_hidden, text_hidden)
    tower_name = root.str_("mm_vision_tower")
    if tower_name:
        view.notes.append(f"vision tower {tower_name} is loaded from its own repository and not counted")
    return _text_params(view, "llama") + projector


def _mllama(view: ModelView) -> int:
    v = view.text
    dec = read_decoder(
        v,
        defaults={
            "vocab": 128256,
            "hidden": 4096,
            "intermediate": 14336,
            "layers": 40,
            "heads": 32,
            "kv_heads": 8,
        },
    )
    cross = len(v.int_list("cross_attention_layers"))
    # Cross-attention layers add q/k norms and two gates; the embedding has 8 extra image tokens.
    total = dec.total() + cross * (2 * dec.head_dim + 2) + 8 * dec.hidden
    vision = _vision(view)
    projector = linear(vision.req_int("vision_output_dim", default=7680), dec.hidden)
    return total + mllama_tower(vision) + projector


def _qwen_vl(
    tower: Callable[[ConfigView], int], text_family: str, *, hybrid: bool = False
) -> Callable[[ModelView], int]:
    def estimate(view: ModelView) -> int:
        if hybrid:
            view.notes.append("hybrid linear-attention layers approximated as full attention")
        return _text_params(view, text_family) + tower(_vision(view))

    return estimate


def _gemma3(view: ModelView) -> int:
    vision = _vision(view)
    text_hidden = view.text.req_int("hidden_size", default=dense.GEMMA3_TEXT["hidden"])
    vision_hidden = vision.req_int("hidden_size", default=1152)
    text = _text_view(view)
    tower = clip_like(vision, kind="siglip", defaults=(1152, 4304, 27, 896, 14))
    return dense.gemma3_text_params(text) + tower + vision_hidden * text_hidden + vision_hidden


def _llama4(view: ModelView) -> int:
    vision = _vision(view)
    text_hidden = view.text.req_int("hidden_size", default=5120)
    projector = vision.req_int("vision_output_dim", default=4096) * text_hidden
    return moe.llama4_text_params(view.text) + llama4_tower(vision) + projector


def _phi3_v(view: ModelView) -> int:
    root = view.root
    text = dense.FAMILIES["phi3"].estimate(view)
    img = root.sub("img_processor")
    embd = root.sub("embd_layer")
    name = (img.str_("model_name") if img else None) or "openai/clip-vit-large-patch14-336"
    tower = preset_tower(name)
    if tower is None:
        view.notes.append(f"vision tower {name} unknown; not counted")
        tower = 0
    dim = img.req_int("image_dim_out", default=1024) if img else 1024
    hidden = root.req_int("hidden_size", default=3072)
    hd = embd.bool_("use_hd_transform", default=False) if embd else False
    extra = 8 * dim if hd and embd and embd.bool_("with_learnable_separator", default=False) else 0
    projector = linear(4 * dim, hidden) + linear(hidden, hidden) if hd else linear(dim, hidden)
    return text + tower + extra + projector


def _deepseek_vl2(view: ModelView) -> int:
    text = mla.deepseek_text_params(view.text, notes=view.notes)
    vision = _vision(view)
    tower = preset_tower(vision.str_("model_name") or "siglip_so400m_patch14_384") or 0
    width = vision.req_int("width", default=1152)
    proj = view.root.sub("projector_config") or ConfigView(
        {}, source=view.root.source, path="projector_config."
    )
    n_embed = proj.req_int("n_embed", default=view.text.req_int("hidden_size", default=1280))
    ratio = proj.req_int("downsample_ratio", default=2, hi=64)
    depth = proj.req_int("depth", default=2, hi=64)
    projector = linear(width * ratio * ratio, n_embed) + (depth - 1) * linear(n_embed, n_embed) + 2 * n_embed
    return text + tower + projector


def _janus(view: ModelView) -> int:
    root = view.root
    text = _text_params(view, "llama")
    vision = root.sub("vision_config")
    params = vision.sub("params") if vision else None
    tower = preset_tower((params.str_("model_name") if params else None) or "siglip_large_patch16_384") or 0
    total = text + tower
    for key in ("aligner_config", "gen_aligner_config"):
        cfg = root.sub(key)
        p = cfg.sub("params") if cfg else None
        if p:
            n_in, n_out = p.req_int("input_dim", default=1024), p.req_int("n_embed", default=2048)
            total += linear(n_in, n_out) + (p.req_int("depth", default=2, hi=64) - 1) * linear(n_out, n_out)
    head = root.sub("gen_head_config")
    hp = head.sub("params") if head else None
    gen = root.sub("gen_vision_config")
    gp = gen.sub("params") if gen else None
    if hp and gp:
        embed, tokens = (
            hp.req_int("image_token_embed", default=2048),
            hp.req_int("image_token_size", default=16384),
        )
        total += linear(hp.req_int("n_embed", default=2048), embed) + linear(embed, tokens)
        total += tokens * gp.req_int("n_embed", default=8)  # gen_embed
        view.notes.append("Janus VQ image tokenizer not counted (its shape is not in config.json)")
    return total


FAMILIES = {
    f.name: f
    for f in [
        Family("llava", _llava, vision=True, default_context=2048),
        Family("llava_next", _llava, vision=True, default_context=2048),
        Family("llava_onevision", _llava, vision=True, default_context=32768),
        Family("mllama", _mllama, vision=True, default_context=131072),
        Family("qwen2_vl", _qwen_vl(qwen2_vl_tower, "qwen2"), vision=True, default_context=32768),
        Family("qwen2_5_vl", _qwen_vl(qwen2_5_vl_tower, "qwen2"), vision=True, default_context=128000),
        Family("qwen3_vl", _qwen_vl(qwen3_vl_tower, "qwen3"), vision=True, default_context=262144),
        Family("qwen3_vl_moe", _qwen_vl(qwen3_vl_tower, "qwen3_moe"), vision=True, default_context=262144),
        Family(
            "qwen3_5", _qwen_vl(qwen3_vl_tower, "qwen3", hybrid=True), vision=True, default_context=262144
        ),
        Family(
            "qwen3_5_moe",
            _qwen_vl(qwen3_vl_tower, "qwen3_moe", hybrid=True),
            vision=True,
            default_context=262144,
        ),
        Family("gemma3", _gemma3, vision=True, default_context=131072, linear_rope_final=True),
        Family("llama4", _llama4, vision=True, default_context=131072),
        Family("phi3_v", _phi3_v, vision=True, default_context=4096),
        Family("deepseek_vl_v2", _deepseek_vl2, vision=True, default_context=4096),
        Family("multi_modality", _janus, vision=True, default_context=4096),
    ]
}
