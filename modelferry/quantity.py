"""Kubernetes resource quantities ("500Gi", "1.5T", "100m", "1e3") parsed into exact decimals.

Placement compares node labels with `Gt`/`Lt` values, and operators write sizes the way
Kubernetes does, so the grammar here is Kubernetes' own:

    quantity  ::= [sign] number [suffix]
    number    ::= digits | digits "." [digits] | "." digits
    suffix    ::= decimal SI (n u m k M G T P E) | binary SI (Ki Mi Gi Ti Pi Ei)
                | ("e" | "E") [sign] digits

"E" alone is exa; "E" followed by digits is an exponent. Anything else ("1K", "1 Gi", "1.5.0",
"Gi", "") is refused with `InvalidQuantityError`. The result is a `Decimal` computed without
rounding, so "1Ti" > "1000Gi" and "0.5Gi" == "512Mi" hold exactly.
"""

from __future__ import annotations

import re
from decimal import MAX_EMAX, MIN_EMIN, Decimal, Inexact, localcontext

from modelferry.errors import InvalidSpecError

_DECIMAL_EXPONENTS = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_POWERS = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_QUANTITY = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)(.*)", re.ASCII | re.DOTALL)
_EXPONENT = re.compile(r"[eE]([+-]?\d{1,9})", re.ASCII)  # 9 digits: far beyond any real size


class InvalidQuantityError(InvalidSpecError, ValueError):
    """Text that is not a Kubernetes quantity; the message quotes it."""


def parse_quantity(text: str) -> Decimal:
    """Parse a Kubernetes quantity into an exact Decimal ("1Ki" -> 1024, "100m" -> 0.1)."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise InvalidQuantityError(f"quantity '{text}': expected a number with an optional suffix")
    sign, number, suffix = match.groups()
    factor = 1
    if suffix in _DECIMAL_EXPONENTS:
        exponent = _DECIMAL_EXPONENTS[suffix]
    elif suffix in _BINARY_POWERS:
        exponent, factor = 0, 1024 ** _BINARY_POWERS[suffix]
    elif exp_match := _EXPONENT.fullmatch(suffix):
        exponent = int(exp_match.group(1))
    else:
        raise InvalidQuantityError(
            f"quantity '{text}': unknown suffix '{suffix}' (expected one of n, u, m, k, M, G, T, P, E, "
            "Ki, Mi, Gi, Ti, Pi, Ei, or an exponent such as e3)"
        )
    with localcontext() as ctx:
        # Enough digits that nothing rounds; Inexact is trapped to prove it.
        ctx.prec = len(number) + 40
        ctx.Emax, ctx.Emin = MAX_EMAX, MIN_EMIN
        ctx.traps[Inexact] = True
        value = Decimal(sign + number).scaleb(exponent) * factor
    return value
