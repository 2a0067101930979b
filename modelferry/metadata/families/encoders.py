"""Encoder models: BERT-style text encoders and stand-alone vision encoders (CLIP, SigLIP).

BERT: word, position and token-type embeddings plus a LayerNorm; post-norm blocks (biased q/k/v/o,
biased MLP, two LayerNorms); a pooler on `*Model` and BERT classifiers, a classifier head on
`*ForSequenceClassification` (RoBERTa/XLM-R use a dense + out_proj head and no pooler), the
prediction transform + output bias on `*ForMaskedLM` (the decoder weight is tied).
"""

from __future__ import annotations

from modelferry.metadata.config_view import ConfigView
from modelferry.metadata.families.base import Estimator, ModelView, linear
from modelferry.metadata.families.registry import Family
from modelferry.metadata.families.vision import clip_like, vit_block

_BERT = {"vocab": 30522, "hidden": 768, "intermediate": 3072, "layers": 12, "positions": 512, "types": 2}
_ROBERTA = {**_BERT, "vocab": 50265, "positions": 514, "types": 1}
_XLMR = {**_BERT, "vocab": 250002, "positions": 514, "types": 1}


def _bert_like(defaults: dict[str, int]) -> Estimator:
    def estimate(view: ModelView) -> int:
        v = view.root
        h = v.req_int("hidden_size", default=defaults["hidden"])
        inter = v.req_int("intermediate_size", default=defaults["intermediate"])
        vocab = v.req_int("vocab_size", default=defaults["vocab"])
        positions = v.int_("max_position_embeddings", default=defaults["positions"]) or 0
        types = v.int_("type_vocab_size", default=defaults["types"]) or 0
        total = (vocab + positions + types) * h + 2 * h
        total += v.req_int("num_hidden_layers", default=defaults["layers"], hi=100_000) * vit_block(h, inter)
        arch = view.architecture or ""
        roberta_like = view.model_type != "bert"
        if arch.endswith("ForSequenceClassification"):
            labels = _labels(v)
            head = linear(h, h) + linear(h, labels)  # BERT: pooler + classifier; RoBERTa: dense + out_proj
            total += head
        elif arch.endswith("ForMaskedLM"):
            total += linear(h, h) + 2 * h + vocab
        elif not roberta_like or arch.endswith("Model"):
            total += linear(h, h)  # pooler
        return total

    return estimate


def _labels(v: ConfigView) -> int:
    id2label = v.sub("id2label")
    if id2label is not None:
        return max(len(id2label.data), 1)
    return v.count("num_labels", default=2, lo=1) or 2


def _clip_vision(view: ModelView) -> int:
    v = view.root
    total = clip_like(v, kind="clip", defaults=(768, 3072, 12, 224, 32))
    if (view.architecture or "").endswith("WithProjection"):
        total += v.req_int("hidden_size", default=768) * v.req_int("projection_dim", default=512)
    return total


def _siglip_vision(view: ModelView) -> int:
    return clip_like(view.root, kind="siglip", defaults=(768, 3072, 12, 224, 16))


def _clip(view: ModelView) -> int:
    """Full CLIP: text transformer + vision transformer + both projections + logit scale."""
    root = view.root
    text = root.sub("text_config") or ConfigView({}, source=root.source, path="text_config.")
    vision = root.sub("vision_config") or ConfigView({}, source=root.source, path="vision_config.")
    projection = root.req_int("projection_dim", default=512)
    th = text.req_int("hidden_size", default=512)
    text_total = (
        text.req_int("vocab_size", default=49408) + text.req_int("max_position_embeddings", default=77)
    ) * th
    text_total += (
        text.req_int("num_hidden_layers", default=12, hi=100_000)
        * vit_block(th, text.req_int("intermediate_size", default=2048))
        + 2 * th
    )
    vh = vision.req_int("hidden_size", default=768)
    vision_total = clip_like(vision, kind="clip", defaults=(768, 3072, 12, 224, 32))
    return text_total + vision_total + (th + vh) * projection + 1


FAMILIES = {
    f.name: f
    for f in [
        Family("bert", _bert_like(_BERT), kind="encoder", default_context=512),
        Family("roberta", _bert_like(_ROBERTA), kind="encoder", default_context=514),
        Family("xlm-roberta", _bert_like(_XLMR), kind="encoder", default_context=514),
        Family("clip_vision_model", _clip_vision, kind="vision_encoder", context_keys=()),
        Family("siglip_vision_model", _siglip_vision, kind="vision_encoder", context_keys=()),
        Family("clip", _clip, kind="vision_encoder", context_keys=()),
    ]
}
