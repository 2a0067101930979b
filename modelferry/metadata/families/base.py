"""Shared pieces of the per-family parameter formulas.

Every formula counts what a checkpoint stores: embeddings, each layer's attention, MLP and norm
weights (and biases where the family has them), the final norm, and the LM head unless it is tied
to the embeddings. Non-persistent buffers (rotary tables, causal masks) are not parameters.
Where a config leaves a key out, the value is the family's `transformers` default, so a trimmed
config estimates the same as the full one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelferry.metadata.config_view import ConfigView


@dataclass
class ModelView:
    """What an estimator sees: the root config, the language-model part, and a place for notes."""

    root: ConfigView
    text: ConfigView  # text_config / llm_config / language_config when nested, else root
    model_type: str
    architecture: str | None
    flags: frozenset[str] = frozenset()  # e.g. "sentence_transformers" when that export is present
    notes: list[str] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)  # config keys an estimate had to derive or assume

    def derive(self, key: str, how: str) -> None:
        """Record that the estimate used a value for `key` the config does not state."""
        if key in self.derived:
            return
        self.derived.append(key)
        self.notes.append(f"{key} not in the config, derived for the estimate: {how}")


Estimator = Callable[[ModelView], int]


@dataclass(frozen=True)
class Decoder:
    """The shape of a decoder-only transformer stack, enough to count its parameters."""

    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool = False
    lm_head: bool = True
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    gated: bool = True
    norm_params: int = 0  # parameters of one norm; 0 means hidden (RMSNorm / LayerNorm without bias)
    norms_per_layer: int = 2
    qk_norm: int = 0  # per-layer parameters of q/k norms
    final_norm: bool = True
    lm_head_bias: bool = False
    positions: int = 0  # learned absolute position embeddings (rows)
    extra: int = 0  # anything else, counted once

    @property
    def norm(self) -> int:
        return self.norm_params or self.hidden

    def attention(self) -> int:
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        params = self.hidden * (q + 2 * kv) + q * self.hidden
        if self.qkv_bias:
            params += q + 2 * kv
        if self.o_bias:
            params += self.hidden
        return params

    def mlp(self) -> int:
        return mlp_params(self.hidden, self.intermediate, gated=self.gated, bias=self.mlp_bias)

    def embeddings(self) -> int:
        heads = 0 if (self.tied or not self.lm_head) else self.vocab * self.hidden
        if self.lm_head and self.lm_head_bias:
            heads += self.vocab
        return self.vocab * self.hidden + heads + self.positions * self.hidden

    def total(self, *, mlp_for_layer: Callable[[int], int] | None = None) -> int:
        per_layer = self.attention() + self.norms_per_layer * self.norm + self.qk_norm
        if mlp_for_layer is None:
            layers = self.layers * (per_layer + self.mlp())
        else:
            layers = self.layers * per_layer + sum(mlp_for_layer(i) for i in range(self.layers))
        final = self.norm if self.final_norm else 0
        return self.embeddings() + layers + final + self.extra


def mlp_params(hidden: int, intermediate: int, *, gated: bool = True, bias: bool = False) -> int:
    """A gated (SwiGLU/GeGLU: gate, up, down) or plain (up, down) MLP."""
    if gated:
        return 3 * hidden * intermediate + (2 * intermediate + hidden if bias else 0)
    return 2 * hidden * intermediate + (intermediate + hidden if bias else 0)


def linear(n_in: int, n_out: int, *, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


# Key spellings used across families for the same quantity.
VOCAB = ("vocab_size", "padded_vocab_size", "n_vocab")
HIDDEN = ("hidden_size", "d_model", "n_embd", "dim")
LAYERS = ("num_hidden_layers", "num_layers", "n_layers", "n_layer")
HEADS = ("num_attention_heads", "n_heads", "n_head", "num_heads")
KV_HEADS = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "n_head_kv")
INTERMEDIATE = ("intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim")


def read_decoder(v: ConfigView, *, defaults: Mapping[str, Any] | None = None, **fixed: Any) -> Decoder:
    """A `Decoder` from common keys; `defaults` fills absent keys, `fixed` overrides the result.

    `defaults` uses canonical names: vocab, hidden, layers, heads, kv_heads, head_dim,
    intermediate, tied, qkv_bias, o_bias, mlp_bias.
    """
    d = dict(defaults or {})
    hidden = v.req_int(*HIDDEN, default=d.get("hidden"))
    heads = v.req_int(*HEADS, default=d.get("heads"), hi=100_000)
    kv_heads = v.int_(*KV_HEADS, default=d.get("kv_heads", heads), lo=1, hi=100_000) or heads
    head_dim = v.int_("head_dim", default=d.get("head_dim") or max(hidden // heads, 1), lo=1)
    inter_default = d.get("intermediate")
    if inter_default is None and not v.first_key(INTERMEDIATE):
        inter_default = 4 * hidden
    bias = v.bool_("attention_bias", default=d.get("qkv_bias", False))
    dec = Decoder(
        vocab=v.req_int(*VOCAB, default=d.get("vocab")),
        hidden=hidden,
        layers=v.req_int(*LAYERS, default=d.get("layers"), hi=100_000),
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim or 1,
        intermediate=v.req_int(*INTERMEDIATE, default=inter_default),
        tied=v.bool_("tie_word_embeddings", default=d.get("tied", False)),
        qkv_bias=bias,
        o_bias=bias,
        mlp_bias=v.bool_("mlp_bias", default=d.get("mlp_bias", False)),
    )
    return replace(dec, **fixed) if fixed else dec
