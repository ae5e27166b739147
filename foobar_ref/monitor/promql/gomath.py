"""Go's float arithmetic where Python's differs: division by zero, Pow, Mod, Atan2, Log, compensated sums. Pure.

Prometheus computes in Go; promtool's rule tests compare floats exactly, so the engine computes
as Go does.  Division by zero gives Inf or NaN instead of an exception; `math.Pow`, `Atan2` and
`Log` (with `Log2`, `Log10`) are Go's algorithms step for step (C's round differently in the last
bit); `exp` stays C's, since Go's amd64 Exp itself differs with the processor's FMA support.
"""

from __future__ import annotations

import math

NAN = math.nan
INF = math.inf


def go_div(lhs: float, rhs: float) -> float:
    if rhs == 0:
        if lhs == 0 or lhs != lhs:
            return NAN
        return math.copysign(INF, lhs) * math.copysign(1.0, rhs)
    return lhs / rhs


def _odd_integer(value: float) -> bool:
    return abs(value) < 2.0**53 and value == math.floor(value) and int(value) % 2 == 1


def go_pow(x: float, y: float) -> float:
    """Go's math.Pow, step for step (C's pow rounds differently in the last bit for fractional powers)."""
    special = _pow_special(x, y)
    if special is not None:
        return special
    fraction, whole = math.modf(abs(y))
    if fraction != 0 and x < 0:
        return NAN
    if whole >= 2.0**63:
        return 1.0 if x == -1 else 0.0 if (abs(x) < 1) == (y > 0) else INF
    result, exponent = 1.0, 0
    if fraction != 0:
        if fraction > 0.5:
            fraction, whole = fraction - 1, whole + 1
        result = exp(fraction * go_log(x))
    mantissa, mantissa_exponent = math.frexp(x)
    bits = int(whole)
    while bits:
        if mantissa_exponent < -(1 << 12) or mantissa_exponent > (1 << 12):
            exponent += mantissa_exponent
            break
        if bits & 1:
            result *= mantissa
            exponent += mantissa_exponent
        mantissa *= mantissa
        mantissa_exponent <<= 1
        if mantissa < 0.5:
            mantissa += mantissa
            mantissa_exponent -= 1
        bits >>= 1
    if y < 0:
        result, exponent = 1 / result, -exponent
    try:
        return math.ldexp(result, exponent)
    except OverflowError:
        return math.copysign(INF, result)


def _pow_special(x: float, y: float) -> float | None:
    if y == 0 or x == 1:
        return 1.0
    if y == 1:
        return x
    if x != x or y != y:
        return NAN
    if x == 0:
        if y < 0:
            return math.copysign(INF, x) if _odd_integer(y) else INF
        return x if _odd_integer(y) else 0.0
    if math.isinf(y):
        return 1.0 if x == -1 else 0.0 if (abs(x) < 1) == (y > 0) else INF
    if math.isinf(x):
        if x < 0:
            return go_pow(1 / x, -y)  # Pow(-0, -y)
        return 0.0 if y < 0 else INF
    if y == 0.5:
        return math.sqrt(x) if x >= 0 else NAN
    if y == -0.5:
        return go_div(1.0, math.sqrt(x)) if x >= 0 else NAN
    return None


def go_atan2(y: float, x: float) -> float:
    """Go's math.Atan2 over its Cephes arctangent (portable Go on amd64), to the last bit."""
    if y != y or x != x:
        return NAN
    if y == 0:
        return math.copysign(0.0, y) if x >= 0 and math.copysign(1.0, x) > 0 else math.copysign(math.pi, y)
    if x == 0:
        return math.copysign(math.pi / 2, y)
    if math.isinf(x):
        if x > 0:
            return math.copysign(math.pi / 4, y) if math.isinf(y) else math.copysign(0.0, y)
        return math.copysign(3 * math.pi / 4, y) if math.isinf(y) else math.copysign(math.pi, y)
    if math.isinf(y):
        return math.copysign(math.pi / 2, y)
    quotient = _atan(y / x)
    if x < 0:
        return quotient + math.pi if quotient <= 0 else quotient - math.pi
    return quotient


def _atan(x: float) -> float:
    if x == 0:
        return x
    return _satan(x) if x > 0 else -_satan(-x)


def _satan(x: float) -> float:
    more_bits = 6.123233995736765886130e-17  # pi/2 = PIO2 + more_bits
    tan_3pi_8 = 2.41421356237309504880
    if x <= 0.66:
        return _xatan(x)
    if x > tan_3pi_8:
        return math.pi / 2 - _xatan(1 / x) + more_bits
    return math.pi / 4 + _xatan((x - 1) / (x + 1)) + 0.5 * more_bits


def _xatan(x: float) -> float:
    p0, p1, p2, p3, p4 = (
        -8.750608600031904122785e-01,
        -1.615753718733365076637e01,
        -7.500855792314704667340e01,
        -1.228866684490136173410e02,
        -6.485021904942025371773e01,
    )
    q0, q1, q2, q3, q4 = (
        2.485846490142306297962e01,
        1.650270098316988542046e02,
        4.328810604912902668951e02,
        4.853903996359136964868e02,
        1.945506571482613964425e02,
    )
    z = x * x
    z = z * ((((p0 * z + p1) * z + p2) * z + p3) * z + p4) / (((((z + q0) * z + q1) * z + q2) * z + q3) * z + q4)
    return x * z + x


def go_mod(lhs: float, rhs: float) -> float:
    try:
        return math.fmod(lhs, rhs)
    except ValueError:
        return NAN


def kahan_inc(increment: float, total: float, compensation: float) -> tuple[float, float]:
    """Prometheus's kahanSumInc (Neumaier's variant): one step of a compensated sum."""
    new_total = total + increment
    if abs(total) >= abs(increment):
        compensation += (total - new_total) + increment
    else:
        compensation += (increment - new_total) + total
    return new_total, compensation


_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_LOG_L = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)
_INVERSE_LN2 = 1.4426950408889634073599246810018920
_INVERSE_LN10 = 0.43429448190325182765112891891660508229439700580366656611445378


def go_log(x: float) -> float:
    """Go's math.Log (FreeBSD's algorithm, also what its amd64 assembly computes), to the last bit."""
    if x != x or x == INF:
        return x
    if x < 0:
        return NAN
    if x == 0:
        return -INF
    fraction, exponent = math.frexp(x)
    if fraction < math.sqrt(2) / 2:
        fraction, exponent = fraction * 2, exponent - 1
    f, k = fraction - 1, float(exponent)
    l1, l2, l3, l4, l5, l6, l7 = _LOG_L
    s = f / (2 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (l1 + s4 * (l3 + s4 * (l5 + s4 * l7)))
    t2 = s4 * (l2 + s4 * (l4 + s4 * l6))
    r = t1 + t2
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


def go_log2(x: float) -> float:
    fraction, exponent = math.frexp(x)
    if fraction == 0.5:
        return float(exponent - 1)  # exact for powers of two
    return go_log(fraction) * _INVERSE_LN2 + float(exponent)


def go_log10(x: float) -> float:
    return go_log(x) * _INVERSE_LN10


def exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return INF
