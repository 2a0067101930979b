"""Kubernetes quantities parse to exact decimals; anything outside the grammar is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from modelferry.errors import InvalidSpecError
from modelferry.quantity import InvalidQuantityError, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Decimal(0)),
        ("42", Decimal(42)),
        ("-7", Decimal(-7)),
        ("+7", Decimal(7)),
        ("1.5", Decimal("1.5")),
        ("1.", Decimal(1)),
        (".5", Decimal("0.5")),
        ("5n", Decimal("5e-9")),
        ("3u", Decimal("3e-6")),
        ("100m", Decimal("0.1")),
        ("2k", Decimal(2000)),
        ("2M", Decimal(2_000_000)),
        ("1.5G", Decimal(1_500_000_000)),
        ("1T", Decimal(10**12)),
        ("1P", Decimal(10**15)),
        ("1E", Decimal(10**18)),
        ("1Ki", Decimal(1024)),
        ("1Mi", Decimal(1024**2)),
        ("500Gi", Decimal(500 * 1024**3)),
        ("1Ti", Decimal(1024**4)),
        ("1Pi", Decimal(1024**5)),
        ("2Ei", Decimal(2 * 1024**6)),
        ("0.5Gi", Decimal(512 * 1024**2)),
        ("-1.5Gi", Decimal(-3 * 512 * 1024**2)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("1e+3", Decimal(1000)),
        ("25e-2", Decimal("0.25")),
        ("1.5E2", Decimal(150)),
        # more digits than the default decimal context keeps: still exact
        ("123456789012345678901234567890.125Ki", Decimal("126419751948641975194864197519488")),
    ],
)
def test_quantity_parses_exactly(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "Gi", "+", "-", ".", "1K", "1ki", "1GB", "1 Gi", " 1", "1 ", "1\n", "1.5.0", "1e", "e3",
     "1e1.5", "1e3Gi", "1Gi3", "0x10", "1_000", "inf", "NaN", "\uff11", "1,5", "--1"],
)  # fmt: skip
def test_non_quantity_is_refused_with_text_quoted(text):
    with pytest.raises(InvalidQuantityError) as caught:
        parse_quantity(text)
    assert f"quantity '{text}'" in str(caught.value)


def test_invalid_quantity_is_a_value_error_and_a_spec_error():
    assert issubclass(InvalidQuantityError, ValueError)
    assert issubclass(InvalidQuantityError, InvalidSpecError)


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [("1000Gi", "1Ti"), ("999m", "1"), ("1T", "1Ti"), ("1e12", "1Ti"), ("-1Ki", "-1k"), ("1023", "1Ki")],
)
def test_quantities_order_across_suffixes(smaller, larger):
    assert parse_quantity(smaller) < parse_quantity(larger)


@pytest.mark.parametrize(
    ("left", "right"), [("512Mi", "0.5Gi"), ("1k", "1e3"), ("1000m", "1"), ("1G", "1e9")]
)
def test_equal_quantities_compare_equal(left, right):
    assert parse_quantity(left) == parse_quantity(right)
