"""Model capabilities in the vocabulary of OME's model catalogue.

OME's Go enum still carries legacy names (TEXT_GENERATION, CHAT, EMBEDDING, VISION, RERANK), but
its catalogue (config/models/*.yaml) and serving chart use input-to-output names; we emit those:

| capability                | when                                                                    |
|---------------------------|-------------------------------------------------------------------------|
| `TEXT_TO_TEXT`            | a generative text model (legacy TEXT_GENERATION, and CHAT when chat-tuned)|
| `IMAGE_TEXT_TO_TEXT`      | a vision-language model (legacy VISION)                                 |
| `VIDEO_TEXT_TO_TEXT`      | ...that also takes video (config has video_token_id / video_token_index)|
| `AUDIO_TEXT_TO_TEXT`      | a language model with an `audio_config`                                 |
| `AUDIO_TO_TEXT`           | speech recognition (Whisper, wav2vec2, HuBERT)                          |
| `TEXT_TO_IMAGE`           | Janus-style models with an image-generation head (`gen_vision_config`)  |
| `TEXT_TO_EMBEDDING`       | embedding models (legacy EMBEDDING)                                     |
| `IMAGE_TEXT_TO_EMBEDDING` | CLIP/SigLIP encoders (image, or image and text, to embedding)           |
| `RERANK`                  | an encoder with a sequence-classification head (cross-encoder)         |
| `REWARD_SCORING`          | a decoder with a classification or reward head (as OME labels Skywork)   |

Embedding signals, any of: a sentence-transformers export beside config.json
(config_sentence_transformers.json, modules.json; how OME spots Qwen3-Embedding); an encoder
family (BERT, RoBERTa, XLM-R) without a task head; a decoder architecture without an LM head
(`MistralModel` for e5-mistral) unless auto_map says it generates (ChatGLM's `ChatGLMModel`);
`is_causal: false` on a decoder (gte-Qwen2); or an embedding name (e5, gte, bge, "embedding").

Vision and audio come from the sub-configs, whatever the family: a `vision_config` (or another
vision key) or an `audio_config`/`sound_config`, at the root or in an omni model's
`thinker_config`. A model with such a sub-config is multimodal even when no family knows its
architecture. For such a composite, an architecture name ending in `Model` is no embedding
signal (`Qwen2_5OmniModel` generates text), unless it is a CLIP/SigLIP-style dual encoder (the
name says clip/siglip, or the root has `projection_dim`/`logit_scale_init_value`); an embedding
model with a vision config embeds images too (`IMAGE_TEXT_TO_EMBEDDING`).
"""

from __future__ import annotations

import re

from modelferry.metadata import schema as s
from modelferry.metadata.families.base import ModelView
from modelferry.metadata.families.generic import has_vision_config, multimodal_holders
from modelferry.metadata.families.registry import Family

_EMBEDDING_NAME = re.compile(r"(?i)(^|[/_\-.])(e5|gte|bge|embed|embedding|embeddings)([/_\-.]|$)")
_ASR = ("whisper", "wav2vec2", "hubert", "forctc", "forspeechseq2seq")
_CHAT_NAME = re.compile(
    r"(?i)(instruct|[-_.]chat|[-_.]it([-_.]|$)|[-_.]sft|[-_.]dpo|[-_.]rlhf|[-_.]rl([-_.]|$))"
)
_AUDIO_KEYS = ("audio_config", "sound_config")
_VIDEO_KEYS = ("video_token_id", "video_token_index")
_DUAL_ENCODER_NAME = re.compile(r"(?i)clip|siglip")
_DUAL_ENCODER_KEYS = ("projection_dim", "logit_scale_init_value")


def detect_capabilities(view: ModelView, family: Family, *, names: list[str]) -> list[str]:
    root = view.root
    arch = view.architecture or ""
    lower = arch.lower()
    if family.kind == "vision_encoder":
        if view.model_type == "clip":
            return [s.TEXT_TO_EMBEDDING, s.IMAGE_TEXT_TO_EMBEDDING]
        return [s.IMAGE_TEXT_TO_EMBEDDING]
    if any(k in lower for k in _ASR):
        return [s.AUDIO_TO_TEXT]
    if arch.endswith("ForSequenceClassification") or "rewardmodel" in lower:
        return [s.RERANK] if family.kind == "encoder" else [s.REWARD_SCORING]
    holders = multimodal_holders(root)
    vision = family.vision or has_vision_config(root)
    audio = any(h.has(k) for h in holders for k in _AUDIO_KEYS)
    if family.kind == "encoder" or _is_embedding(view, names, composite=vision or audio):
        return [s.TEXT_TO_EMBEDDING, s.IMAGE_TEXT_TO_EMBEDDING] if vision else [s.TEXT_TO_EMBEDDING]
    if vision:
        caps = [s.IMAGE_TEXT_TO_TEXT]
        if any(h.has(k) for h in holders for k in _VIDEO_KEYS):
            caps.append(s.VIDEO_TEXT_TO_TEXT)
    else:
        caps = [s.TEXT_TO_TEXT]
    if audio:
        caps.append(s.AUDIO_TEXT_TO_TEXT)
    if root.has("gen_vision_config"):
        caps.append(s.TEXT_TO_IMAGE)
    return caps


def _is_embedding(view: ModelView, names: list[str], *, composite: bool) -> bool:
    if "sentence_transformers" in view.flags:
        return True
    if view.root.bool_("is_causal", default=True) is False:
        return True
    arch = view.architecture or ""
    headless = (
        arch.endswith("Model") and not arch.endswith(("LMHeadModel", "ChatModel")) and "CausalLM" not in arch
    )
    # A multimodal wrapper named `...Model` generates text, unless it is a dual encoder.
    if headless and (not composite or _dual_encoder(view)):
        auto_map = view.root.sub("auto_map")
        generates = auto_map is not None and any(k in auto_map.data for k in ("AutoModelForCausalLM",))
        if not generates:
            return True
    return any(_EMBEDDING_NAME.search(n) for n in names)


def _dual_encoder(view: ModelView) -> bool:
    if _DUAL_ENCODER_NAME.search(f"{view.model_type} {view.architecture or ''}"):
        return True
    return any(view.root.has(k) for k in _DUAL_ENCODER_KEYS)


def detect_chat_tuned(names: list[str]) -> bool | None:
    """True when a model name says instruct/chat/-it/SFT/DPO/RL; None when there is no name."""
    if not names:
        return None
    return any(_CHAT_NAME.search(n) for n in names)
