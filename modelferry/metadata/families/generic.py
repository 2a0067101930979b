"""The fallback for a `model_type` no family knows: a best-effort estimate from common keys.

- The language model may sit in a nested config (`text_config`, `llm_config`, `language_config`,
  `thinker_config.text_config`; the parser picks it). Its keys win and the root fills those it
  lacks, so a wrapper that states `vocab_size` only at the top still estimates.
- When that nested config names a family we know (InternVL's `llm_config.model_type: qwen2`),
  that family counts the language model.
- Otherwise a Llama-style decoder: gated MLPs, RMSNorms, untied head unless
  `tie_word_embeddings`. Mixture of experts, under any spelling of the expert count
  (`num_experts`, `n_routed_experts`, `num_local_experts`, `moe_num_experts`): every expert is a
  gated MLP of `moe_intermediate_size` (else `intermediate_size`) plus the router; shared experts
  are `n_shared_experts` x `moe_intermediate_size` or `shared_expert_intermediate_size`; layers
  before `first_k_dense_replace` and those in `mlp_only_layers` are dense.
- Keys the count can do without are derived, never a reason to give up, and each is named
  (`ModelView.derive`): without `num_attention_heads` the attention is counted from `head_dim`
  (heads = hidden_size / head_dim), or else as full multi-head attention whose q, k, v and o
  projections are hidden_size wide (the head count does not change that count); `head_dim`
  defaults to hidden_size / num_attention_heads; `intermediate_size`, when a dense MLP needs it,
  to 4 x hidden_size. hidden size, layers and vocabulary have no stand-in.
- A vision tower is not counted (its layout differs per family); a note says so. A model with a
  vision config keeps its LM head even when its architecture ends in `Model`: it generates text.
"""

from __future__ import annotations

from dataclasses import replace

from modelferry.metadata.config_view import ConfigView, LayeredView
from modelferry.metadata.families import dense, mla, moe
from modelferry.metadata.families.base import (
    HEADS,
    HIDDEN,
    INTERMEDIATE,
    KV_HEADS,
    LAYERS,
    VOCAB,
    Decoder,
    ModelView,
    mlp_params,
)
from modelferry.metadata.families.registry import Family

EXPERT_COUNT_KEYS = ("num_experts", "n_routed_experts", "num_local_experts", "moe_num_experts")
VISION_KEYS = ("vision_config", "img_processor", "mm_vision_tower", "vision_tower", "visual")


def multimodal_holders(root: ConfigView) -> list[ConfigView]:
    """Where a model's vision and audio sub-configs live: the root, and an omni `thinker_config`."""
    thinker = root.sub("thinker_config")
    return [root, thinker] if thinker is not None else [root]


def has_vision_config(root: ConfigView) -> bool:
    return any(h.has(k) for h in multimodal_holders(root) for k in VISION_KEYS)


def _language_view(view: ModelView) -> ConfigView:
    return view.text if view.text is view.root else LayeredView(view.text, view.root)


def _known_text_family(view: ModelView) -> Family | None:
    if view.text is view.root:
        return None
    model_type = view.text.str_("model_type")
    table = {**dense.FAMILIES, **moe.FAMILIES, **mla.FAMILIES}
    return table.get(model_type or "")


def _estimate(view: ModelView) -> int:
    vision = has_vision_config(view.root)
    if vision:
        view.notes.append("vision tower not counted: its layout is not known for this model type")
    lang = _language_view(view)
    family = _known_text_family(view)
    if family is not None:
        view.notes.append(f"language model estimated as {family.name} ({view.text.path}model_type)")
        sub = ModelView(
            root=lang,
            text=lang,
            model_type=family.name,
            architecture=None,
            flags=view.flags,
            notes=view.notes,
            derived=view.derived,
        )
        return family.estimate(sub)
    view.notes.append("unknown family: estimated as a Llama-style decoder from common config keys")
    return _decoder_total(view, lang, keep_head=vision)


def _decoder_total(view: ModelView, v: ConfigView, *, keep_head: bool) -> int:
    hidden = v.req_int(*HIDDEN)
    layers = v.req_int(*LAYERS, hi=100_000)
    vocab = v.req_int(*VOCAB)
    heads = v.int_(*HEADS, lo=1, hi=100_000)
    head_dim = v.int_("head_dim", lo=1)
    kv_heads = v.int_(*KV_HEADS, lo=1, hi=100_000)
    if heads is None and head_dim is not None:
        heads = max(hidden // head_dim, 1)
        view.derive("num_attention_heads", f"hidden_size / head_dim = {heads}")
    elif heads is None:
        ignored = f" ({v.first_key(KV_HEADS)} ignored)" if kv_heads else ""
        view.derive(
            "num_attention_heads",
            f"attention counted as full multi-head, q/k/v/o each hidden_size wide{ignored}",
        )
        heads, kv_heads, head_dim = 1, 1, hidden
    if head_dim is None:
        head_dim = max(hidden // heads, 1)
        view.derive("head_dim", f"hidden_size / num_attention_heads = {head_dim}")
    bias = v.bool_("attention_bias", default=False)
    dec = Decoder(
        vocab=vocab,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads or heads,
        head_dim=head_dim,
        intermediate=0,  # read below, only where a dense MLP needs it
        tied=v.bool_("tie_word_embeddings", default=False),
        qkv_bias=bias,
        o_bias=bias,
        mlp_bias=v.bool_("mlp_bias", default=False),
    )
    if not keep_head:
        dec = dense.head_lost(view, dec)
    experts = v.count(*EXPERT_COUNT_KEYS, lo=0) or 0
    if not experts:
        return replace(dec, intermediate=_intermediate(view, v, hidden)).total()
    return _moe_total(view, v, dec, experts)


def _intermediate(view: ModelView, v: ConfigView, hidden: int) -> int:
    value = v.int_(*INTERMEDIATE, lo=1)
    if value is None:
        value = 4 * hidden
        view.derive("intermediate_size", f"4 x hidden_size = {value}")
    return value


def _moe_total(view: ModelView, v: ConfigView, dec: Decoder, experts: int) -> int:
    h = dec.hidden
    expert_width = v.int_("moe_intermediate_size", lo=1) or _intermediate(view, v, h)
    sparse = experts * mlp_params(h, expert_width) + h * experts  # experts + router
    n_shared = v.count("n_shared_experts", default=0) or 0
    shared_width = v.int_("shared_expert_intermediate_size", default=0) or 0
    if n_shared:
        sparse += mlp_params(h, n_shared * expert_width)
    elif shared_width:
        sparse += mlp_params(h, shared_width)
    first_sparse = v.count("first_k_dense_replace", default=0) or 0
    dense_only = set(v.int_list("mlp_only_layers"))
    dense_layers = {i for i in range(dec.layers) if i < first_sparse or i in dense_only}
    dense_mlp = mlp_params(h, _intermediate(view, v, h)) if dense_layers else 0
    view.notes.append(f"mixture of experts: {experts} experts counted in every sparse layer")
    return dec.total(mlp_for_layer=lambda i: dense_mlp if i in dense_layers else sparse)


GENERIC = Family("generic", _estimate, known=False)
