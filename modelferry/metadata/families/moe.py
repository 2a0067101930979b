"""Mixture-of-experts decoders (every expert is counted: total, not active, parameters).

Which layers are sparse differs per family: Qwen2/3-MoE use `decoder_sparse_step` and
`mlp_only_layers`, Llama 4 `interleave_moe_layer_step` (or an explicit `moe_layers`), the
DeepSeek family `first_k_dense_replace` and `moe_layer_freq` (see `mla.py`). Dense layers of a
mixed stack use the family's dense width (`intermediate_size`, Llama 4's `intermediate_size_mlp`).
"""

from __future__ import annotations

from dataclasses import replace

from modelferry.metadata.config_view import ConfigView
from modelferry.metadata.families.base import Decoder, Estimator, ModelView, linear, mlp_params, read_decoder
from modelferry.metadata.families.registry import Family


def _experts(v: ConfigView, *keys: str, default: int | None = None) -> int:
    return v.count(*keys, default=default, lo=1) or 1


def _mixtral(view: ModelView) -> int:
    v = view.text
    dec = read_decoder(
        v,
        defaults={
            "vocab": 32000,
            "hidden": 4096,
            "intermediate": 14336,
            "layers": 32,
            "heads": 32,
            "kv_heads": 8,
        },
    )
    experts = _experts(v, "num_local_experts", default=8)
    moe = experts * mlp_params(dec.hidden, dec.intermediate) + dec.hidden * experts
    return dec.total(mlp_for_layer=lambda _i: moe)


def _phimoe(view: ModelView) -> int:
    v = view.text
    dec = read_decoder(
        v,
        defaults={
            "vocab": 32064,
            "hidden": 4096,
            "intermediate": 6400,
            "layers": 32,
            "heads": 32,
            "kv_heads": 8,
        },
    )
    dec = replace(dec, norm_params=2 * dec.hidden, lm_head_bias=v.bool_("lm_head_bias", default=False))
    experts = _experts(v, "num_local_experts", default=16)
    moe = experts * mlp_params(dec.hidden, dec.intermediate) + dec.hidden * experts
    return dec.total(mlp_for_layer=lambda _i: moe)


def _qwen_moe(*, shared: bool, qk_norm: bool) -> Estimator:
    def estimate(view: ModelView) -> int:
        v = view.text
        defaults = {"vocab": 151936, "hidden": 2048, "intermediate": 5632, "layers": 24, "heads": 16}
        dec = read_decoder(v, defaults=defaults, **({} if qk_norm else {"qkv_bias": True, "o_bias": False}))
        if qk_norm:
            dec = replace(dec, qk_norm=2 * dec.head_dim)
        return qwen_moe_total(v, dec, shared=shared)

    return estimate


def qwen_moe_total(v: ConfigView, dec: Decoder, *, shared: bool) -> int:
    experts = _experts(v, "num_experts", default=60)
    moe_inter = v.req_int("moe_intermediate_size", default=1408)
    step = v.count("decoder_sparse_step", default=1, lo=1) or 1
    dense_only = set(v.int_list("mlp_only_layers"))
    moe = experts * mlp_params(dec.hidden, moe_inter) + dec.hidden * experts
    if shared:
        shared_inter = v.int_("shared_expert_intermediate_size", default=0) or 0
        if shared_inter:
            moe += mlp_params(dec.hidden, shared_inter) + dec.hidden  # + shared_expert_gate
    dense = dec.mlp()

    def mlp_for_layer(i: int) -> int:
        return moe if i not in dense_only and (i + 1) % step == 0 else dense

    return dec.total(mlp_for_layer=mlp_for_layer)


def _olmoe(view: ModelView) -> int:
    v = view.text
    dec = read_decoder(
        v, defaults={"vocab": 50304, "hidden": 2048, "intermediate": 2048, "layers": 16, "heads": 16}
    )
    dec = replace(dec, qk_norm=dec.hidden + dec.kv_heads * dec.head_dim)
    experts = _experts(v, "num_experts", default=64)
    moe = experts * mlp_params(dec.hidden, dec.intermediate) + dec.hidden * experts
    return dec.total(mlp_for_layer=lambda _i: moe)


def _granitemoe(view: ModelView) -> int:
    v = view.text
    dec = read_decoder(
        v, defaults={"vocab": 32000, "hidden": 4096, "intermediate": 11008, "layers": 32, "heads": 32}
    )
    experts = _experts(v, "num_local_experts", default=8)
    moe = experts * mlp_params(dec.hidden, dec.intermediate) + dec.hidden * experts
    shared_inter = v.int_("shared_intermediate_size", default=0) or 0
    if shared_inter:
        moe += mlp_params(dec.hidden, shared_inter)
    return dec.total(mlp_for_layer=lambda _i: moe)


def _dbrx(view: ModelView) -> int:
    """DBRX: own key names (d_model, n_layers, attn_config, ffn_config); LayerNorms without bias."""
    v = view.text
    attn = v.sub("attn_config") or ConfigView({}, source=v.source, path="attn_config.")
    ffn = v.sub("ffn_config") or ConfigView({}, source=v.source, path="ffn_config.")
    hidden = v.req_int("d_model", default=2048)
    heads = v.req_int("n_heads", default=16, hi=100_000)
    dec = Decoder(
        vocab=v.req_int("vocab_size", default=32000),
        hidden=hidden,
        layers=v.req_int("n_layers", default=24, hi=100_000),
        heads=heads,
        kv_heads=attn.req_int("kv_n_heads", default=1, hi=100_000),
        head_dim=max(hidden // heads, 1),
        intermediate=ffn.req_int("ffn_hidden_size", default=3584),
        tied=v.bool_("tie_word_embeddings", default=False),
    )
    experts = _experts(ffn, "moe_num_experts", default=4)
    moe = experts * mlp_params(dec.hidden, dec.intermediate) + dec.hidden * experts
    return dec.total(mlp_for_layer=lambda _i: moe)


def _gpt_oss(view: ModelView) -> int:
    """gpt-oss: biased attention with per-head sinks; experts with biases; MXFP4 in the files."""
    v = view.text
    dec = read_decoder(
        v,
        defaults={
            "vocab": 201088,
            "hidden": 2880,
            "intermediate": 2880,
            "layers": 36,
            "heads": 64,
            "kv_heads": 8,
            "head_dim": 64,
            "qkv_bias": True,
        },
    )
    experts = _experts(v, "num_local_experts", default=128)
    h, i = dec.hidden, dec.intermediate
    moe = experts * (linear(h, 2 * i) + linear(i, h)) + linear(h, experts)
    dec = replace(dec, extra=dec.layers * dec.heads)  # attention sinks
    return dec.total(mlp_for_layer=lambda _i: moe)


def llama4_text_params(v: ConfigView) -> int:
    """Llama 4 text stack: routed experts + one shared expert on MoE layers, wider dense layers."""
    dec = read_decoder(
        v,
        defaults={
            "vocab": 202048,
            "hidden": 5120,
            "intermediate": 8192,
            "layers": 48,
            "heads": 40,
            "kv_heads": 8,
            "head_dim": 128,
        },
    )
    experts = _experts(v, "num_local_experts", default=16)
    dense_inter = v.req_int("intermediate_size_mlp", default=16384)
    moe = (experts + 1) * mlp_params(dec.hidden, dec.intermediate) + dec.hidden * experts
    dense = mlp_params(dec.hidden, dense_inter)
    moe_layers = set(v.int_list("moe_layers"))
    if not moe_layers:
        step = v.count("interleave_moe_layer_step", default=1, lo=1) or 1
        moe_layers = set(range(step - 1, dec.layers, step))
    return dec.total(mlp_for_layer=lambda i: moe if i in moe_layers else dense)


FAMILIES = {
    f.name: f
    for f in [
        Family("mixtral", _mixtral, default_context=131072),
        Family("phimoe", _phimoe, default_context=131072),
        Family("qwen2_moe", _qwen_moe(shared=True, qk_norm=False), default_context=32768),
        Family("qwen3_moe", _qwen_moe(shared=False, qk_norm=True), default_context=32768),
        Family("olmoe", _olmoe, default_context=4096),
        Family("granitemoe", _granitemoe, default_context=2048),
        Family("granitemoeshared", _granitemoe, default_context=2048),
        Family("dbrx", _dbrx, context_keys=("max_seq_len", "max_position_embeddings"), default_context=2048),
        Family("gpt_oss", _gpt_oss, default_context=131072),
        Family("llama4_text", lambda view: llama4_text_params(view.text), default_context=4096 * 32),
    ]
}
