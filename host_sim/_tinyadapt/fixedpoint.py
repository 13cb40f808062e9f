"""The one numpy definition of tinyadapt's fixed-point rules, bit-exact with
natmod/ta_fixedpoint.c (whose header states the same formulas).

Every function takes int64 numpy arrays (or ints, which become int64 arrays),
broadcasts, and returns int64 arrays. Values are int32-ranged; int64 holds
every intermediate exactly (the largest is 2^62 + 2^30 in srdhm).
"""

import numpy as np

I32_MIN = -(1 << 31)
I32_MAX = (1 << 31) - 1
U32_MASK = 0xFFFFFFFF

_I64 = np.int64


def _i64(x):
    return np.asarray(x, dtype=_I64)


def wrap_i32(x):
    """Reduce modulo 2^32 into [-2^31, 2^31 - 1] (two's complement wrap)."""
    x = _i64(x)
    return ((x - I32_MIN) & U32_MASK) + I32_MIN


def saturate(x, lo, hi):
    """x < lo -> lo, else x > hi -> hi, else x."""
    x, lo, hi = _i64(x), _i64(lo), _i64(hi)
    return np.where(x < lo, lo, np.where(x > hi, hi, x))


def rounding_rshift(x, n):
    """TFLite RoundingDivideByPOT: x / 2^n to nearest, ties away from zero.
    floor(x / 2^n) plus one when the remainder x & (2^n - 1) exceeds
    (2^n - 1) >> 1, or that plus one for negative x. n in [0, 31]."""
    x, n = _i64(x), _i64(n)
    mask = (_I64(1) << n) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(_I64)
    return (x >> n) + (remainder > threshold).astype(_I64)


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul: with p = a * b,
    trunc((p + (2^30 if p >= 0 else 1 - 2^30)) / 2^31), and
    INT32_MIN * INT32_MIN saturating to INT32_MAX."""
    a, b = _i64(a), _i64(b)
    p = a * b
    v = p + np.where(p >= 0, _I64(1 << 30), _I64(1 - (1 << 30)))
    # division truncating toward zero, spelled with shifts of |v|
    q = np.where(v >= 0, v >> 31, -((-v) >> 31))
    return np.where((a == I32_MIN) & (b == I32_MIN), _I64(I32_MAX), q)


def mul_by_quantized_mult(x, mult, shift):
    """TFLite double-rounding MultiplyByQuantizedMultiplier:
    rounding_rshift(srdhm(sat32(x * 2^max(shift, 0)), mult), max(-shift, 0)).
    shift in [-31, 30], so x * 2^left stays below 2^62 in int64."""
    x, mult, shift = _i64(x), _i64(mult), _i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    y = np.clip(x * (_I64(1) << left), I32_MIN, I32_MAX)
    return rounding_rshift(srdhm(y, mult), right)


def requant_to_i8(acc, mult, shift, out_zp, act_min, act_max):
    """clamp(mul_by_quantized_mult(acc, mult, shift) + out_zp, act_min,
    act_max) with the addition exact in int64; returns int8."""
    r = mul_by_quantized_mult(acc, mult, shift) + _I64(out_zp)
    return saturate(r, act_min, act_max).astype(np.int8)


def xorshift32(state, count):
    """Advance xorshift32 (13, 17, 5) ``count`` times from ``state`` (nonzero
    uint32); return (array of the count states as uint32, final state)."""
    s = int(state) & U32_MASK
    states = []
    append = states.append
    for _ in range(count):
        s ^= (s << 13) & U32_MASK
        s ^= s >> 17
        s ^= (s << 5) & U32_MASK
        append(s)
    return np.array(states, dtype=np.uint32), s
