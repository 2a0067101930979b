"""`modelParameterSize`: a parameter count written the way models are named.

Rule, checked against published names and model cards:
- from 10 units up, whole units rounded *down*: names drop the fraction and never round up
  (Llama-3.1-70B has 70.55B -> "70B", Qwen2.5-14B 14.77B -> "14B", DeepSeek-V3 -> "671B");
- below 10 units, one decimal rounded to nearest, as model cards state sizes (Llama-3.1-8B's
  8.03B -> "8B", Qwen2.5-1.5B's 1.54B -> "1.5B", Qwen3-8B's 8.19B -> "8.2B", Kimi-K2's 1.03T ->
  "1T"); a trailing ".0" is dropped;
- below one billion, the nearest million ("135M" for SmolLM-135M's 134.5M); below a million the
  nearest thousand ("46K"); below 1000 the plain number.
"""

from __future__ import annotations


def format_parameter_size(count: int) -> str:
    if count < 0:
        raise ValueError("parameter count cannot be negative")
    for scale, suffix in ((10**12, "T"), (10**9, "B")):
        if count >= 10 * scale:
            return f"{count // scale}{suffix}"
        if count >= scale - scale // 2000:  # rounds to at least 1.0 at this scale's precision
            tenths = (count * 10 + scale // 2) // scale
            return f"{tenths // 10}{suffix}" if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10}{suffix}"
    if count >= 999_500:
        return f"{(count + 500_000) // 10**6}M"
    if count >= 1000:
        return f"{(count + 500) // 1000}K"
    return str(count)
