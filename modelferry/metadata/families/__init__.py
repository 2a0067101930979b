"""Per-family knowledge: parameter formulas and context keys, keyed by `model_type`.

`find_family(model_type, architecture)` returns the family for a config; a `model_type` we do not
know falls back to one guessed from the architecture name, then to a generic Llama-style estimate
(`Family.known` is False, and the parser says so in its warnings; see `generic`).
"""

from __future__ import annotations

from modelferry.metadata.families import dense, encoders, generic, mla, moe, multimodal
from modelferry.metadata.families.base import ModelView
from modelferry.metadata.families.registry import Family

FAMILIES: dict[str, Family] = {
    **dense.FAMILIES,
    **moe.FAMILIES,
    **mla.FAMILIES,
    **multimodal.FAMILIES,
    **encoders.FAMILIES,
}
GENERIC = generic.GENERIC

_ARCH_SUFFIXES = (
    "ForCausalLM",
    "ForConditionalGeneration",
    "LMHeadModel",
    "ForSequenceClassification",
    "Model",
)


def find_family(model_type: str | None, architecture: str | None) -> tuple[Family, bool]:
    """(family, known): the registered family, or a guess from the architecture, or GENERIC."""
    if model_type and model_type in FAMILIES:
        return FAMILIES[model_type], True
    if architecture:
        stem = architecture
        for suffix in _ARCH_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        guess = FAMILIES.get(stem.lower())
        if guess is not None and not model_type:
            return guess, True
    return GENERIC, False


__all__ = ["FAMILIES", "GENERIC", "Family", "ModelView", "find_family"]
