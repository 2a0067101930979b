"""The context length (`maxTokens`) a model supports, from its config.

1. The base length is the first of the family's `context_keys` present in the language-model part
   of the config (`text_config`, `llm_config`, `language_config`) or else at the root; families
   that state it another way say so (ChatGLM and Qwen v1: `seq_length`, the *trained* length —
   Qwen v1's max_position_embeddings only sizes its rotary cache; DBRX: `max_seq_len`). Failing
   those, the common spellings (max_position_embeddings, n_positions, max_sequence_length,
   seq_length, max_seq_len, n_ctx), then the family's transformers default.
2. RoPE scaling that *extends* the window raises it:
   - `yarn` and `dynamic`: factor x original_max_position_embeddings (or x the base length when no
     original is given, as Qwen2.5's documented yarn recipe does); the result is never below the
     base. DeepSeek-V3: 40 x 4096 = 163840; gpt-oss and Kimi-K2: 32 x 4096 = 131072.
   - `linear`: factor x base for Llama-style fine-tunes (vicuna-16k: 4 x 4096), but not for
     families whose max_position_embeddings already includes it (Gemma 3).
   - `llama3`, `longrope`/`su` (Phi-3), `mrope`, `default`: no change; max_position_embeddings
     already is the extended window (Llama 3.1: 131072 with original 8192).
3. RoBERTa-style encoders reserve two positions for padding: 514 positions = 512 tokens.
"""

from __future__ import annotations

from modelferry.metadata.config_view import MAX_CONTEXT, ConfigView
from modelferry.metadata.families.base import ModelView
from modelferry.metadata.families.registry import Family

_COMMON_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_sequence_length",
    "seq_length",
    "max_seq_len",
    "n_ctx",
)
_PADDED_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert"})


def _rope(v: ConfigView) -> ConfigView | None:
    return v.sub("rope_scaling") or v.sub("rope_parameters")


def resolve_max_tokens(view: ModelView, family: Family) -> int | None:
    views = [view.text] if view.text is view.root else [view.text, view.root]
    base: int | None = None
    where: ConfigView | None = None
    for keys in (family.context_keys, _COMMON_KEYS):
        for v in views:
            key = v.first_key(keys)
            if key is not None:
                base = v.int_(key, lo=1, hi=MAX_CONTEXT)
                where = v
                break
        if base is not None:
            break
    if base is None:
        if family.default_context is not None and family.kind == "decoder":
            view.notes.append(
                f"context length not in config.json; {family.name} default {family.default_context}"
            )
            return family.default_context
        return None
    assert where is not None
    length = _apply_rope_scaling(where, base, family=family, notes=view.notes)
    if view.model_type in _PADDED_POSITIONS and length > 2:
        length -= 2
    return length


def _apply_rope_scaling(v: ConfigView, base: int, *, family: Family, notes: list[str]) -> int:
    rope = _rope(v)
    if rope is None:
        return base
    kind = (rope.str_("rope_type") or rope.str_("type") or "default").lower()
    factor = rope.float_("factor", default=1.0, lo=0.0, hi=1e4) or 1.0
    if kind in ("yarn", "dynamic"):
        original = rope.int_("original_max_position_embeddings", lo=1, hi=MAX_CONTEXT) or v.int_(
            "original_max_position_embeddings", lo=1, hi=MAX_CONTEXT
        )
        extended = int((original or base) * factor)
    elif kind == "linear" and not family.linear_rope_final:
        extended = int(base * factor)
    else:
        return base
    if extended > MAX_CONTEXT:
        raise v.fail("rope_scaling", f"extends the context to {extended}, beyond {MAX_CONTEXT}")
    if extended > base:
        notes.append(f"{kind} rope scaling (factor {factor:g}) extends the context from {base} to {extended}")
        return extended
    return base
