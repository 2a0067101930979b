"""DeepSeek-style models: multi-head latent attention (MLA) and shared + routed experts.

Covers deepseek_v2, deepseek_v3, kimi_k2 (a DeepSeek-V3 architecture) and minicpm3 (MLA with a
dense MLP). MLA per layer: q_a (hidden -> q_lora_rank) + its norm + q_b (-> heads x (nope+rope)),
or one q_proj when q_lora_rank is null; kv_a (hidden -> kv_lora_rank + rope) + its norm; kv_b
(-> heads x (nope + v_head)); o (heads x v_head -> hidden). A layer is sparse when
`layer >= first_k_dense_replace and layer % moe_layer_freq == 0`; it holds n_routed_experts
experts, n_shared_experts fused into one MLP of n_shared x moe_intermediate_size, and a router
(plus a per-expert score bias for `noaux_tc` routing, as in V3).

Multi-token-prediction layers (`num_nextn_predict_layers`, 1 in DeepSeek-V3) are *not* counted:
transformers does not load them, and the published 671B excludes them. The checkpoint does store
them, so an exact count from the files leaves them out too (see `parser.py`).
"""

from __future__ import annotations

from dataclasses import replace

from modelferry.metadata.config_view import ConfigView
from modelferry.metadata.families.base import ModelView, linear, mlp_params, read_decoder
from modelferry.metadata.families.registry import Family


def _mla_attention(v: ConfigView, *, hidden: int, heads: int, bias: bool) -> int:
    q_lora = v.int_("q_lora_rank", lo=1)
    kv_lora = v.req_int("kv_lora_rank", default=512)
    nope = v.req_int("qk_nope_head_dim", default=128)
    rope = v.req_int("qk_rope_head_dim", default=64)
    v_head = v.req_int("v_head_dim", default=hidden // heads)
    q_dim = heads * (nope + rope)
    if q_lora:
        q = linear(hidden, q_lora, bias=bias) + q_lora + linear(q_lora, q_dim, bias=False)
    else:
        q = linear(hidden, q_dim, bias=False)
    kv = (
        linear(hidden, kv_lora + rope, bias=bias)
        + kv_lora
        + linear(kv_lora, heads * (nope + v_head), bias=False)
    )
    return q + kv + linear(heads * v_head, hidden, bias=bias)


def deepseek_text_params(v: ConfigView, *, notes: list[str]) -> int:
    dec = read_decoder(
        v, defaults={"vocab": 102400, "hidden": 4096, "intermediate": 11008, "layers": 30, "heads": 32}
    )
    use_mla = v.bool_("use_mla", default=True) and v.has("kv_lora_rank")
    if use_mla:
        attn = _mla_attention(v, hidden=dec.hidden, heads=dec.heads, bias=dec.qkv_bias)
        # Decoder.attention() is replaced by the MLA count through `extra`.
        dec = replace(dec, heads=0, kv_heads=0, extra=dec.layers * attn, qkv_bias=False, o_bias=False)
    experts = v.count("n_routed_experts", lo=0) or 0
    first_dense = v.count("first_k_dense_replace", default=0) or 0
    freq = v.count("moe_layer_freq", default=1, lo=1) or 1
    moe_inter = v.req_int("moe_intermediate_size", default=1407)
    shared = v.count("n_shared_experts", default=0) or 0
    moe = experts * mlp_params(dec.hidden, moe_inter) + dec.hidden * experts
    if v.str_("topk_method") == "noaux_tc":
        moe += experts  # e_score_correction_bias
    if shared:
        moe += mlp_params(dec.hidden, moe_inter * shared)
    dense = dec.mlp()
    mtp = v.count("num_nextn_predict_layers", default=0) or 0
    if mtp:
        notes.append(f"{mtp} multi-token-prediction layer(s) not counted (transformers does not load them)")

    def mlp_for_layer(i: int) -> int:
        return moe if experts and i >= first_dense and i % freq == 0 else dense

    return dec.total(mlp_for_layer=mlp_for_layer)


def _deepseek(view: ModelView) -> int:
    return deepseek_text_params(view.text, notes=view.notes)


def _minicpm3(view: ModelView) -> int:
    v = view.text
    dec = read_decoder(
        v,
        defaults={
            "vocab": 73448,
            "hidden": 2560,
            "intermediate": 6400,
            "layers": 62,
            "heads": 40,
            "tied": True,
        },
    )
    attn = _mla_attention(v, hidden=dec.hidden, heads=dec.heads, bias=False)
    dec = replace(dec, heads=0, kv_heads=0, extra=dec.layers * attn)
    return dec.total()


FAMILIES = {
    f.name: f
    for f in [
        Family("deepseek_v2", _deepseek, default_context=2048),
        Family("deepseek_v3", _deepseek, default_context=4096),
        Family("kimi_k2", _deepseek, default_context=4096),
        Family("minicpm3", _minicpm3, default_context=32768),
    ]
}
