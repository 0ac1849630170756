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
import math
from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias

from protocol.errors import LocalProtocolError

Exponents: TypeAlias = dict[int, int]
"""A positive integer as its prime factorisation: prime -> exponent."""


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


def odd_scale(larger: Mapping[int, int], smaller: Mapping[int, int]) -> tuple[int, int]:
    """``(odd, shift)`` with ``larger / smaller == odd << shift`` (as ``power_product``).

    Multiplying a long number by a power of two is a shift, much cheaper than a
    multiplication by as many bits (10 000 = 2**4 * 5**4: about a third of the
    bits of a denominator are twos).
    """
    result = 1
    shift = 0
    for prime, exponent in larger.items():
        difference = exponent - smaller.get(prime, 0)
        if difference:
            if prime == 2:
                shift = difference
            else:
                result *= _power(prime, difference)
    return result, shift


def _log2(numerator: int, denominator: int) -> float:
    """``log2(numerator / denominator)`` from the leading 64 bits of each (both positive).

    The shifts keep a constant number of bits, so this costs the same for
    numbers of thousands of digits as for small ones. The error is below
    ``2**-40`` plus the rounding of the final sum, ``|result| * 2**-53``.
    """
    numerator_shift = max(0, numerator.bit_length() - 64)
    denominator_shift = max(0, denominator.bit_length() - 64)
    return (
        math.log2(numerator >> numerator_shift)
        - math.log2(denominator >> denominator_shift)
        + (numerator_shift - denominator_shift)
    )


# Approximate logarithms further apart than this (plus the float rounding of
# their size, see ``_log2``) certainly order their values; closer ones are
# compared exactly.
_CERTAIN_LOG2_GAP: Final = 2.0**-20


def _certainly_larger(first: float, second: float) -> bool:
    return first - second > _CERTAIN_LOG2_GAP + (abs(first) + abs(second)) * 2.0**-50


def largest_remainder(
    values: Sequence[tuple[int, int]],
    total: int,
    factors: Sequence[tuple[int, int]] | None = None,
) -> list[int]:
    """Round exact non-negative ``numerator / denominator`` values to integers summing to ``total``.

    Each value is rounded down; the units still missing go one each to the
    values with the largest remainders, exact ties to the earliest in
    ``values`` (the caller orders them by its tie-break key). Raises
    ``LocalProtocolError`` unless ``sum(floor(v)) <= total <= sum(floor(v)) +
    len(values)`` (always so when the values sum to ``total`` exactly).

    With ``factors``, value ``i`` is ``values[i]`` times the (small, positive)
    fraction ``factors[i]``: long values below 1 are then never multiplied out.

    Remainders are ordered by an approximate logarithm (constant cost per
    value, however long the numbers); runs of values whose approximations
    are too close to be certain are then ordered exactly, by
    cross-multiplication and position. The result is the exact order's.
    """
    scaled = [
        (numerator, denominator, *factor)
        for (numerator, denominator), factor in zip(
            values, factors or [(1, 1)] * len(values), strict=True
        )
    ]
    floors = [
        0
        if n.bit_length() + a.bit_length() < d.bit_length() + b.bit_length() - 1  # n*a < d*b
        else (n * a) // (d * b)
        for n, d, a, b in scaled
    ]
    missing = total - sum(floors)
    if not 0 <= missing <= len(values):
        raise LocalProtocolError("unroundable", f"cannot round to {total}: {missing} units off")
    if missing == 0:
        return floors
    remainders = [
        (n * a - floor * d * b, d * b, 1, 1) if floor else (n, d, a, b)
        for (n, d, a, b), floor in zip(scaled, floors, strict=True)
    ]
    logs = [
        _log2(n, d) + (math.log2(a) - math.log2(b)) if n else -math.inf for n, d, a, b in remainders
    ]
    approximate = sorted(range(len(values)), key=lambda index: (-logs[index], index))

    def larger_first(first: int, second: int) -> int:
        (n1, d1, a1, b1), (n2, d2, a2, b2) = remainders[first], remainders[second]
        difference = n1 * (a1 * b2) * d2 - n2 * (a2 * b1) * d1
        if difference:
            return -1 if difference > 0 else 1
        return -1 if first < second else (1 if first > second else 0)

    order: list[int] = []
    start = 0
    while start < len(approximate):  # each pass takes one run of uncertain neighbours
        end = start + 1
        # Zero remainders (log -inf) come last, already in position order.
        while end < len(approximate) and not (
            math.isinf(logs[approximate[end]])
            or _certainly_larger(logs[approximate[end - 1]], logs[approximate[end]])
        ):
            end += 1
        run = approximate[start:end]
        if len(run) > 1:
            run.sort(key=functools.cmp_to_key(larger_first))
        order.extend(run)
        if len(order) >= missing:
            break
        start = end
    for index in order[:missing]:
        floors[index] += 1
    return floors
