"""`modelParameterSize`: a parameter count in three significant figures with a K/M/B/T suffix.

Rule: round the count to three significant figures, half up, never truncating; then write it in
the largest unit it reaches and drop trailing zeros of the fraction:
- Mixtral-8x7B's 46,702,792,704 -> "46.7B", Llama-3.2-11B-Vision's 10.67B -> "10.7B",
  Llama 4 Maverick's 401.6B -> "402B", gpt-oss-120b's 116.8B -> "117B";
- Llama-3.2-1B's 1.236B -> "1.24B", Llama-3.1-8B's 8.030B -> "8.03B", an even 8.0B -> "8B";
- the unit switches at 1,000 of the smaller one, as in OME's FormatParamCount: 494,032,768 ->
  "494M" (never "0.494B"), and a count that *rounds* to 1,000 of a unit moves up
  (999,600,000 -> "1B");
- below 1,000 the plain number.
OME's own formatter keeps two decimals (151,500,000,000 -> "151.5B"); three significant figures
keep every size the same width, as model cards round ("402B", not "401.58B").
"""

from __future__ import annotations

_UNITS = ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K"))
_FIGURES = 3


def format_parameter_size(count: int) -> str:
    if count < 0:
        raise ValueError("parameter count cannot be negative")
    rounded = _round_significant(count, _FIGURES)
    for scale, suffix in _UNITS:
        if rounded >= scale:
            whole, rest = divmod(rounded, scale)
            fraction = str(rest).rjust(len(str(scale)) - 1, "0").rstrip("0")
            return f"{whole}.{fraction}{suffix}" if fraction else f"{whole}{suffix}"
    return str(rounded)


def _round_significant(count: int, figures: int) -> int:
    """`count` rounded half up to `figures` significant digits, in integers (no float error)."""
    step = 10 ** max(len(str(count)) - figures, 0)
    return (count + step // 2) // step * step
