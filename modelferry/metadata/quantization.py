"""The quantization of a checkpoint, normalised to one short label.

Vocabulary of `ModelMetadata.quantization` (null when the weights are not quantized):

| label        | from                                                                          |
|--------------|-------------------------------------------------------------------------------|
| `fp8`        | quant_method fp8; compressed-tensors / modelopt with 8-bit float weights        |
| `fbgemm_fp8` | quant_method fbgemm_fp8 (kept apart, as OME's enum does)                        |
| `int4`       | gptq / awq / auto-round with 4 bits; compressed-tensors / modelopt int4 weights |
| `int8`       | the same with 8 bits; bitsandbytes load_in_8bit; eetq                           |
| `intN`       | gptq / awq with another bit width (2, 3)                                       |
| `nf4`, `fp4` | bitsandbytes 4-bit, by bnb_4bit_quant_type                                    |
| `mxfp4`      | quant_method mxfp4 (gpt-oss)                                                    |
| `nvfp4`      | modelopt NVFP4; compressed-tensors 4-bit float weights                          |
| *method*     | any other quant_method, lower-cased, with a warning                             |

`fp8`, `fbgemm_fp8` and `int4` are OME's own enum values. The raw `quant_method` is kept on
`ParseResult.quantization_method`. The label also fixes how packed weights unpack when counting
(`PackingRules`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelferry.metadata.config_view import ConfigView
from modelferry.metadata.safetensors_header import PackingRules


@dataclass(frozen=True)
class Quantization:
    label: str | None = None
    method: str | None = None
    rules: PackingRules = field(default_factory=PackingRules)
    notes: tuple[str, ...] = ()


_MODELOPT_ALGOS = {
    "FP8": "fp8",
    "NVFP4": "nvfp4",
    "W4A16_AWQ": "int4",
    "W4A8_AWQ": "int4",
    "INT4_AWQ": "int4",
    "W8A8_SQ_PER_CHANNEL": "int8",
    "INT8_SQ": "int8",
}


def read_quantization(root: ConfigView, text: ConfigView, *, extra_files: Mapping[str, Any]) -> Quantization:
    qc = root.sub("quantization_config") or root.sub("compression_config") or text.sub("quantization_config")
    if qc is None:
        hf_quant = extra_files.get("hf_quant_config.json")
        if isinstance(hf_quant, Mapping) and isinstance(hf_quant.get("quantization"), Mapping):
            qc = ConfigView(
                {"quant_method": "modelopt", **hf_quant["quantization"]},
                source="hf_quant_config.json",
                path="quantization.",
            )
        else:
            return Quantization()
    method = (qc.str_("quant_method") or "").lower() or None
    if method is None:
        return Quantization(notes=("quantization_config has no quant_method",))
    if method in ("fp8", "fbgemm_fp8", "mxfp4"):
        return Quantization(method, method)
    if method in ("gptq", "awq", "auto-round", "autoround"):
        bits = qc.int_("bits", "w_bit", default=4, lo=1, hi=32) or 4
        return Quantization(f"int{bits}", method, PackingRules(int32_values=max(32 // bits, 1)))
    if method == "bitsandbytes":
        if qc.bool_("load_in_4bit", default=False) or qc.bool_("_load_in_4bit", default=False):
            kind = (qc.str_("bnb_4bit_quant_type") or "fp4").lower()
            return Quantization(
                kind if kind in ("nf4", "fp4") else "nf4", method, PackingRules(uint8_weights_are_fp4=True)
            )
        return Quantization("int8", method)
    if method == "eetq":
        return Quantization("int8", method)
    if method == "compressed-tensors":
        return _compressed_tensors(qc)
    if method == "modelopt":
        algo = (qc.str_("quant_algo") or "").upper()
        label = _MODELOPT_ALGOS.get(algo, algo.lower() or "modelopt")
        return Quantization(label, method, PackingRules(uint8_weights_are_fp4=label == "nvfp4"))
    return Quantization(
        method, method, notes=(f"quantization method {method!r} not recognised; reported as is",)
    )


def _compressed_tensors(qc: ConfigView) -> Quantization:
    """Label from the weight schemes of config_groups: float 8 -> fp8, int 4 -> int4, float 4 -> nvfp4."""
    labels: list[str] = []
    bits_seen = 4
    groups = qc.sub("config_groups")
    for name in list(groups.data) if groups else []:
        group = groups.sub(name) if groups else None
        weights = group.sub("weights") if group else None
        if weights is None:
            continue
        bits = weights.int_("num_bits", default=8, lo=1, hi=64) or 8
        kind = (weights.str_("type") or "int").lower()
        label = "nvfp4" if kind == "float" and bits == 4 else ("fp8" if kind == "float" else f"int{bits}")
        if label not in labels:
            labels.append(label)
        bits_seen = bits
    fmt = (qc.str_("format") or "").lower()
    rules = PackingRules(int32_values=max(32 // bits_seen, 1), uint8_weights_are_fp4="nvfp4" in fmt)
    if not labels:
        return Quantization(
            "compressed-tensors",
            "compressed-tensors",
            rules,
            ("compressed-tensors config without weight schemes",),
        )
    notes = (f"mixed weight schemes: {', '.join(labels)}",) if len(labels) > 1 else ()
    return Quantization("+".join(labels), "compressed-tensors", rules, notes)
