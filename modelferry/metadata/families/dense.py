"""Dense decoder families: one formula (`Decoder`), per-family differences as small overrides.

Differences that matter for the count: which projections carry biases (Qwen2 q/k/v; Phi, Phi-3
small and StarCoder2 everything), gated vs plain MLPs, norms per layer (Gemma-2/3 and GLM-4 have
four, Cohere one, OLMo none with parameters), per-head q/k norms (Qwen3, Gemma-3, OLMo-2),
LayerNorm with bias (2H) vs RMSNorm (H), tied embeddings, and an LM head bias (Phi, PhiMoE).
"""

from __future__ import annotations

from dataclasses import replace

from modelferry.metadata.families.base import Decoder, Estimator, ModelView, read_decoder
from modelferry.metadata.families.registry import Family

_LLAMA = {"vocab": 32000, "hidden": 4096, "intermediate": 11008, "layers": 32, "heads": 32}


def head_lost(view: ModelView, dec: Decoder) -> Decoder:
    """`*Model` architectures (no head) store no LM head; classifiers store a small score head."""
    arch = view.architecture or ""
    if arch.endswith("ForSequenceClassification") or "RewardModel" in arch:
        labels = 1 if "RewardModel" in arch else _num_labels(view)  # InternLM2/Qwen2 reward: v_head -> 1
        view.notes.append(f"{arch}: LM head replaced by a {labels}-output score head")
        return replace(dec, lm_head=False, extra=dec.extra + dec.hidden * labels)
    if arch.endswith("Model") and not arch.endswith(("LMHeadModel", "ChatModel")) and "CausalLM" not in arch:
        return replace(dec, lm_head=False)
    return dec


def _num_labels(view: ModelView) -> int:
    id2label = view.root.sub("id2label")
    if id2label is not None:
        return max(len(id2label.data), 1)
    return view.root.count("num_labels", default=2, lo=1) or 2


def _simple(*, defaults: dict | None = None, **fixed: object) -> Estimator:
    def estimate(view: ModelView) -> int:
        dec = read_decoder(view.text, defaults=defaults or _LLAMA, **fixed)
        return head_lost(view, dec).total()

    return estimate


def _qwen2(view: ModelView) -> int:
    defaults = {"vocab": 151936, "hidden": 4096, "intermediate": 22016, "layers": 32, "heads": 32}
    dec = read_decoder(view.text, defaults=defaults, qkv_bias=True, o_bias=False)
    return head_lost(view, dec).total()


def _qwen3(view: ModelView) -> int:
    defaults = {
        "vocab": 151936,
        "hidden": 4096,
        "intermediate": 22016,
        "layers": 32,
        "heads": 32,
        "head_dim": 128,
    }
    dec = read_decoder(view.text, defaults=defaults)
    dec = replace(dec, qk_norm=2 * dec.head_dim)
    if "sentence_transformers" in view.flags and (view.architecture or "").endswith("ForCausalLM"):
        view.notes.append("sentence-transformers export: the backbone is stored without its LM head")
        dec = replace(dec, lm_head=False)
    return head_lost(view, dec).total()


def _gemma(norms: int, *, qk_norm: bool, defaults: dict) -> Estimator:
    def estimate(view: ModelView) -> int:
        dec = read_decoder(view.text, defaults={**defaults, "tied": True}, norms_per_layer=norms)
        if qk_norm:
            dec = replace(dec, qk_norm=2 * dec.head_dim)
        return head_lost(view, dec).total()

    return estimate


_GEMMA = {"vocab": 256000, "hidden": 3072, "intermediate": 24576, "layers": 28, "heads": 16, "head_dim": 256}
_GEMMA2 = {
    "vocab": 256000,
    "hidden": 2304,
    "intermediate": 9216,
    "layers": 26,
    "heads": 8,
    "kv_heads": 4,
    "head_dim": 256,
}
GEMMA3_TEXT = {
    "vocab": 262208,
    "hidden": 2304,
    "intermediate": 9216,
    "layers": 26,
    "heads": 8,
    "kv_heads": 4,
    "head_dim": 256,
}


def gemma3_text_params(view: ModelView) -> int:
    return _gemma(4, qk_norm=True, defaults=GEMMA3_TEXT)(view)


def _cohere(view: ModelView) -> int:
    defaults = {
        "vocab": 256000,
        "hidden": 8192,
        "intermediate": 22528,
        "layers": 40,
        "heads": 64,
        "tied": True,
    }
    dec = read_decoder(view.text, defaults=defaults, norms_per_layer=1)
    if view.text.bool_("use_qk_norm", default=False):
        dec = replace(dec, qk_norm=(dec.heads + dec.kv_heads) * dec.head_dim)
    return head_lost(view, dec).total()


def _internlm(default_bias: bool) -> Estimator:
    def estimate(view: ModelView) -> int:
        bias = view.text.bool_("bias", default=default_bias)
        dec = read_decoder(view.text, defaults=_LLAMA, qkv_bias=bias, o_bias=bias)
        return head_lost(view, dec).total()

    return estimate


def _stablelm(view: ModelView) -> int:
    v = view.text
    defaults = {"vocab": 50304, "hidden": 2560, "intermediate": 6912, "layers": 32, "heads": 32}
    dec = read_decoder(v, defaults=defaults, qkv_bias=v.bool_("use_qkv_bias", default=False), o_bias=False)
    dec = replace(dec, norm_params=2 * dec.hidden)
    if v.bool_("qk_layernorm", default=False):
        dec = replace(dec, qk_norm=(dec.heads + dec.kv_heads) * dec.head_dim)
    return head_lost(view, dec).total()


def _phi(view: ModelView) -> int:
    """Phi-1/1.5/2: parallel attention+MLP under one LayerNorm, biases everywhere, LM head bias."""
    v = view.text
    defaults = {"vocab": 51200, "hidden": 2048, "intermediate": 8192, "layers": 24, "heads": 32}
    dec = read_decoder(v, defaults=defaults, qkv_bias=True, o_bias=True, mlp_bias=True, gated=False)
    dec = replace(dec, norm_params=2 * dec.hidden, norms_per_layer=1, lm_head_bias=True)
    if v.bool_("qk_layernorm", default=False):
        dec = replace(dec, qk_norm=4 * dec.head_dim)
    return head_lost(view, dec).total()


def _phi3small(view: ModelView) -> int:
    v = view.text
    dec = read_decoder(v, defaults={"vocab": 100352, "tied": True}, qkv_bias=True, o_bias=True, mlp_bias=True)
    dec = replace(
        dec,
        intermediate=v.req_int("ff_intermediate_size", "intermediate_size", default=dec.intermediate),
        norm_params=2 * dec.hidden,
    )
    return head_lost(view, dec).total()


def _starcoder2(view: ModelView) -> int:
    v = view.text
    bias = v.bool_("use_bias", default=True)
    defaults = {
        "vocab": 49152,
        "hidden": 3072,
        "intermediate": 12288,
        "layers": 30,
        "heads": 24,
        "kv_heads": 2,
        "tied": True,
    }
    dec = read_decoder(v, defaults=defaults, qkv_bias=bias, o_bias=bias, mlp_bias=bias, gated=False)
    return head_lost(view, replace(dec, norm_params=2 * dec.hidden)).total()


def _olmo(view: ModelView) -> int:
    dec = read_decoder(view.text, defaults=_LLAMA)
    return head_lost(view, replace(dec, norms_per_layer=0, final_norm=False)).total()


def _olmo2(view: ModelView) -> int:
    dec = read_decoder(view.text, defaults=_LLAMA)
    return head_lost(view, replace(dec, qk_norm=(dec.heads + dec.kv_heads) * dec.head_dim)).total()


def _glm(norms: int) -> Estimator:
    def estimate(view: ModelView) -> int:
        dec = read_decoder(
            view.text, defaults={**_LLAMA, "qkv_bias": True}, o_bias=False, norms_per_layer=norms
        )
        return head_lost(view, dec).total()

    return estimate


def _chatglm(view: ModelView) -> int:
    """ChatGLM2/3 and GLM-4 (THUDM remote code): fused QKV, multi-query groups, own key names."""
    v = view.text
    heads = v.req_int("num_attention_heads", default=32)
    groups = (
        v.req_int("multi_query_group_num", default=heads)
        if v.bool_("multi_query_attention", default=False)
        else heads
    )
    linear_bias = v.bool_("add_bias_linear", default=False)
    dec = read_decoder(
        v,
        defaults={"vocab": 65024, "hidden": 4096, "intermediate": 13696, "layers": 28, "heads": heads},
        kv_heads=groups,
        head_dim=v.req_int("kv_channels", default=v.req_int("hidden_size", default=4096) // heads),
        vocab=v.req_int("padded_vocab_size", "vocab_size", default=65024),
        qkv_bias=v.bool_("add_qkv_bias", default=False) or linear_bias,
        o_bias=linear_bias,
        mlp_bias=linear_bias,
        tied=False,
    )
    if not v.bool_("rmsnorm", default=True):
        dec = replace(dec, norm_params=2 * dec.hidden)
    if not v.bool_("post_layer_norm", default=True):
        dec = replace(dec, final_norm=False)
    return dec.total()


def _qwen_v1(view: ModelView) -> int:
    """Qwen (v1, remote code): c_attn with bias, SwiGLU whose width is intermediate_size / 2."""
    v = view.text
    dec = read_decoder(
        v,
        defaults={"vocab": 151936, "hidden": 4096, "intermediate": 22016, "layers": 32, "heads": 32},
        qkv_bias=True,
        o_bias=False,
        tied=False,
    )
    return head_lost(view, replace(dec, intermediate=dec.intermediate // 2)).total()


FAMILIES = {
    f.name: f
    for f in [
        Family("llama", _simple(), default_context=2048),
        Family(
            "mistral",
            _simple(defaults={**_LLAMA, "intermediate": 14336, "kv_heads": 8}),
            default_context=131072,
        ),
        Family("qwen2", _qwen2, default_context=32768),
        Family("qwen3", _qwen3, default_context=32768),
        Family("gemma", _gemma(2, qk_norm=False, defaults=_GEMMA), default_context=8192),
        Family("gemma2", _gemma(4, qk_norm=False, defaults=_GEMMA2), default_context=8192),
        Family("gemma3_text", gemma3_text_params, default_context=131072, linear_rope_final=True),
        Family("granite", _simple(), default_context=2048),
        Family("cohere", _cohere, default_context=8192),
        Family("cohere2", _cohere, default_context=8192),
        Family("internlm", _internlm(True), default_context=2048),
        Family("internlm2", _internlm(False), default_context=2048),
        Family("internlm3", _internlm(False), default_context=2048),
        Family("baichuan", _simple(), context_keys=("max_position_embeddings", "model_max_length")),
        Family("xverse", _simple(), default_context=2048),
        Family("exaone", _simple(), default_context=2048),
        Family("minicpm", _simple(defaults={**_LLAMA, "tied": True}), default_context=2048),
        Family("stablelm", _stablelm, default_context=4096),
        Family("phi", _phi, default_context=2048),
        Family(
            "phi3",
            _simple(defaults={**_LLAMA, "vocab": 32064, "hidden": 3072, "intermediate": 8192}),
            default_context=4096,
        ),
        Family("phi3small", _phi3small, default_context=8192),
        Family("starcoder2", _starcoder2, default_context=4096),
        Family("olmo", _olmo, default_context=2048),
        Family("olmo2", _olmo2, default_context=2048),
        Family("glm", _glm(2), default_context=131072),
        Family("glm4", _glm(4), default_context=131072),
        Family("chatglm", _chatglm, context_keys=("seq_length", "max_position_embeddings")),
        Family("qwen", _qwen_v1, context_keys=("seq_length", "max_position_embeddings")),
    ]
}
