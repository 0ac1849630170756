"""Exact arithmetic for the credit split: integers over denominators known by their primes.

The credit that reaches a record is a rational number of basis points whose
denominator is a product of ``10000 * W`` factors along the paths to it (W: a
remix's total parent weight). ``fractions.Fraction`` would reduce every sum
with a gcd, quadratic in the size of the numbers, and deep remix chains make
those numbers thousands of digits long. Instead ``protocol.lineage`` keeps,
for each record, one denominator fixed in advance (the lcm over the paths
reaching it, computed from prime exponents: small integers), so that adding
credit is integer multiplication by small factors and addition, both linear.

This module owns those helpers and the largest-remainder rounding. Nothing
here is approximate: floating point is never used to decide anything.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias

from protocol.errors import LocalProtocolError

Exponents: TypeAlias = dict[int, int]
"""A positive integer as its prime factorisation: prime -> exponent."""

_APPROXIMATION_BITS: Final = 64


@functools.lru_cache(maxsize=4096)
def _factorisation(number: int) -> tuple[tuple[int, int], ...]:
    factors: list[tuple[int, int]] = []
    divisor = 2
    while divisor * divisor <= number:
        if number % divisor == 0:
            exponent = 0
            while number % divisor == 0:
                number //= divisor
                exponent += 1
            factors.append((divisor, exponent))
        divisor += 1 if divisor == 2 else 2
    if number > 1:
        factors.append((number, 1))
    return tuple(factors)


def exponents_of(number: int) -> Exponents:
    """The prime factorisation of a positive integer (trial division, cached).

    The numbers factored are ``10000 * W`` with W at most 64 parents times a
    weight of 10^6, so trial division stops below 10^4.
    """
    if number < 1:
        raise LocalProtocolError("not-positive", str(number))
    return dict(_factorisation(number))


def combine(first: Mapping[int, int], second: Mapping[int, int]) -> Exponents:
    """The exponents of the product of two numbers."""
    product = dict(first)
    for prime, exponent in second.items():
        product[prime] = product.get(prime, 0) + exponent
    return product


def raise_to(target: Exponents, other: Mapping[int, int]) -> None:
    """Make ``target`` the exponents of lcm(target, other), in place."""
    for prime, exponent in other.items():
        if target.get(prime, 0) < exponent:
            target[prime] = exponent


@functools.lru_cache(maxsize=4096)
def _power(prime: int, exponent: int) -> int:
    power: int = prime**exponent
    return power


def power_product(larger: Mapping[int, int], smaller: Mapping[int, int]) -> int:
    """The integer ``larger / smaller`` for factorisations where ``smaller`` divides ``larger``.

    That ``smaller`` divides ``larger`` is the caller's promise (not checked:
    this is the inner loop of the split).
    """
    result = 1
    for prime, exponent in larger.items():
        difference = exponent - smaller.get(prime, 0)
        if difference:
            result *= _power(prime, difference)
    return result


def _magnitude(numerator: int, denominator: int) -> tuple[int, int]:
    """A key that orders non-negative fractions, exact to 64 significant bits.

    ``(k, m)`` with ``k = floor(log2(x))`` and ``m = floor(x * 2**(63 - k))``
    (so ``2**63 <= m < 2**64``); 0 maps below everything. If ``x > y`` then
    ``key(x) >= key(y)``: keys that differ order the values, equal keys need
    an exact comparison. Costs shifts and one division: linear in the size.
    """
    if numerator == 0:
        return (-(1 << 62), 0)
    exponent = numerator.bit_length() - denominator.bit_length()
    # x is in [2**(exponent - 1), 2**(exponent + 1)): settle which half.
    if exponent >= 0:
        below = numerator < (denominator << exponent)
    else:
        below = (numerator << -exponent) < denominator
    k = exponent - 1 if below else exponent
    shift = _APPROXIMATION_BITS - 1 - k
    if shift >= 0:
        return k, (numerator << shift) // denominator
    return k, numerator // (denominator << -shift)


def largest_remainder(values: Sequence[tuple[int, int]], total: int) -> list[int]:
    """Round exact non-negative ``numerator / denominator`` values to integers summing to ``total``.

    Each value is rounded down; the units still missing go one each to the
    values with the largest remainders, exact ties to the earliest in
    ``values`` (the caller orders them by its tie-break key). Raises
    ``LocalProtocolError`` unless ``sum(floor(v)) <= total <= sum(floor(v)) +
    len(values)`` (always so when the values sum to ``total`` exactly).
    """
    floors = [numerator // denominator for numerator, denominator in values]
    missing = total - sum(floors)
    if not 0 <= missing <= len(values):
        raise LocalProtocolError("unroundable", f"cannot round to {total}: {missing} units off")
    if missing == 0:
        return floors
    remainders = [
        (numerator - floor * denominator, denominator)
        for (numerator, denominator), floor in zip(values, floors, strict=True)
    ]
    # A 64-bit floating key orders almost everything; exact cross-multiplication
    # settles keys that are equal.
    keys = [_magnitude(r, d) for r, d in remainders]

    def larger_first(first: int, second: int) -> int:
        if keys[first] != keys[second]:
            return -1 if keys[first] > keys[second] else 1
        (r1, d1), (r2, d2) = remainders[first], remainders[second]
        difference = r1 * d2 - r2 * d1
        if difference:
            return -1 if difference > 0 else 1
        return -1 if first < second else (1 if first > second else 0)

    order = sorted(range(len(values)), key=functools.cmp_to_key(larger_first))
    for index in order[:missing]:
        floors[index] += 1
    return floors
