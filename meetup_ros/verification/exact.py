"""Exact decimals for the property readers (VNN-LIB and YAML), and their way into float64.

A property's numbers are read as ``fractions.Fraction`` and its linear terms are combined
exactly; only the results become float64, rounded away from the unsafe set's inside (an
input bound outward, an output row's bound up), so the set the proof reads contains the one
written. Before this, the YAML reader summed constants in float64: ``a + 1e308 + 1e308 >=
1e308 + 1e308`` became a NaN bound, which every proof passed (a tester's wrong "unsat"), and
``a + 1000000000.3 >= 1000000000.6`` read as a >= 0.30000007, which shrank the unsafe set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction

import numpy as np

# ASCII decimals only: Python's float() also takes "1_0", "nan" and non-ASCII digits
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?")
MAX_EXPONENT = 1000  # beyond float64's range either way; 10^(10^8) took minutes to build
EXACT_INTEGER = 2 ** 53
FLOAT64_MAX = Fraction(float(np.finfo(np.float64).max))


class ExactError(ValueError):
    """A number or row the readers refuse; the message says why, the reader says where."""


class NotADecimalError(ExactError):
    """Text that is no decimal at all (a reader may take it for a misspelt name)."""


def read_decimal(text: str) -> Fraction:
    """An ASCII decimal (``-0.5``, ``1e-3``) as an exact fraction, within float64's range.

    Raises:
        NotADecimalError: not such a decimal.
        ExactError: an exponent past +-MAX_EXPONENT, too many digits,
            or beyond the float64 range.
    """
    if text.lstrip("+-").lower() in ("nan", "inf", "infinity"):
        raise ExactError(f"{text!r} is not a finite number")
    match = NUMBER.fullmatch(text)
    if match is None:
        raise NotADecimalError(f"{text!r} is not an ASCII decimal such as -0.5 or 1e-3")
    if match.group(1) is not None and abs(int(match.group(1))) > MAX_EXPONENT:
        raise ExactError(f"{text!r}: exponent beyond +-{MAX_EXPONENT}")
    try:
        value = Fraction(text)
    except ValueError:  # Python's limit on the digits of an integer (4300)
        raise ExactError(f"a number of {len(text)} characters; too many digits") from None
    if abs(value) > FLOAT64_MAX:
        raise ExactError(f"{text!r} is beyond the float64 range")
    return value


def float_out(value: Fraction, up: bool) -> float:
    """The float64 nearest ``value`` on the side away from the set: above it if ``up``.

    Raises:
        OverflowError: beyond the float64 range.
    """
    f = float(value)
    exact = Fraction(f)
    if up and exact < value:
        f = math.nextafter(f, math.inf)
    elif not up and exact > value:
        f = math.nextafter(f, -math.inf)
    return f


def integer_row(coeffs: Mapping[int, Fraction], bound: Fraction, n: int
                ) -> tuple[np.ndarray, float]:
    """``sum c_j y_j <= bound`` as a float64 row of exact integer coefficients and its bound
    rounded up: scaled by the least common denominator, divided by the greatest common
    divisor (0.1 Y_0 <= 0.3 is Y_0 <= 3). Rounding a coefficient instead would move the row
    (a tester's 1.0000000000000001 Y_1, read as Y_1, hid an unsafe point).

    Raises:
        ExactError: a coefficient past 2^53 after scaling, or the bound beyond float64.
    """
    terms = {j: c for j, c in coeffs.items() if c != 0}
    scale = Fraction(1)
    if terms:
        scale = Fraction(math.lcm(*(c.denominator for c in terms.values())),
                         math.gcd(*(c.numerator for c in terms.values())))
    row = np.zeros(n)
    for j, c in terms.items():
        if abs(c * scale) > EXACT_INTEGER:
            raise ExactError("output coefficients that float64 cannot hold exactly (as "
                             "integers they pass 2^53); write them with fewer digits")
        row[j] = float(c * scale)
    try:
        return row, float_out(bound * scale, up=True)  # the set can only grow
    except OverflowError:
        scaled = abs(bound * scale)
        digits = len(str(scaled.numerator)) - len(str(scaled.denominator))
        raise ExactError(f"bound beyond the float64 range (scaled to integer coefficients "
                         f"it is about 10^{digits})") from None
