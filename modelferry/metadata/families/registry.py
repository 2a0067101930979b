"""What the parser knows about one model family, keyed by `model_type`."""

from __future__ import annotations

from dataclasses import dataclass

from modelferry.metadata.families.base import Estimator


@dataclass(frozen=True)
class Family:
    """One `model_type` (or a group sharing a formula).

    `context_keys` are tried in order for the context length (ChatGLM and Qwen v1 state it as
    `seq_length`; DBRX and MPT as `max_seq_len`). `default_context` is the family's transformers
    default when the config leaves every key out. `linear_rope_final` says that a "linear"
    rope_scaling is already reflected in max_position_embeddings (Gemma 3), where older Llama
    fine-tunes stretch it by the factor.
    """

    name: str
    estimate: Estimator
    context_keys: tuple[str, ...] = ("max_position_embeddings",)
    default_context: int | None = None
    linear_rope_final: bool = False
    kind: str = "decoder"  # decoder | encoder | vision_encoder
    vision: bool = False  # takes images (its own tower or an external one)
    known: bool = True
