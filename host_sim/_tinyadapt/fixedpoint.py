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


# ---- additions for the int8 inference kernels (ABI 2); the rules are
# stated once more in natmod/ta_fixedpoint.h ----

def sat_lshift(x, n):
    """x * 2^n clamped to int32, n in [0, 31] (gemmlowp's
    SaturatingRoundingMultiplyByPOT<n> for n > 0)."""
    x, n = _i64(x), _i64(n)
    return np.clip(x * (_I64(1) << n), I32_MIN, I32_MAX)


def mul_by_quantized_mult_gt1(x, mult, left_shift):
    """TFLite MultiplyByQuantizedMultiplierGreaterThanOne:
    srdhm(sat_lshift(x, left_shift), mult), left_shift in [0, 31]."""
    return srdhm(sat_lshift(x, left_shift), mult)


def rounding_half_sum(a, b):
    """gemmlowp RoundingHalfSum: (a + b) / 2 rounded half away from zero."""
    s = _i64(a) + _i64(b)
    return np.where(s >= 0, (s + 1) >> 1, -((1 - s) >> 1))


def clz32(x):
    """Leading zero bits of x taken as uint32 (32 for 0)."""
    v = _i64(x) & U32_MASK
    bits = np.zeros(v.shape, dtype=_I64)
    for s in (16, 8, 4, 2, 1):
        big = v >= (1 << s)
        bits = bits + np.where(big, s, 0)
        v = np.where(big, v >> s, v)
    return 32 - (bits + (v > 0))


_EXP_C = 1895147668     # exp(-1/8), Q0.31
_ONE_THIRD = 715827883  # 1/3, Q0.31
# exp(-2^k) in Q0.31 for k = -2 .. 4, applied for bit 26 + k of the remainder
_EXP_BARREL = (1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242)


def exp_on_interval_neg_quarter_0(a):
    """gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl,
    Q0.31 -> Q0.31: a 4th-order Taylor expansion around -1/8."""
    x = wrap_i32(_i64(a) + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    t = wrap_i32(rounding_rshift(x4, 2) + x3)
    t = wrap_i32(srdhm(t, _ONE_THIRD) + x2)
    t = rounding_rshift(t, 1)
    return wrap_i32(_EXP_C + srdhm(_EXP_C, wrap_i32(x + t)))


def exp_on_negative_values_q5(a):
    """gemmlowp exp_on_negative_values for Q5.26 input, Q0.31 result."""
    a = _i64(a)
    quarter = 1 << 24
    q = (a & (quarter - 1)) - quarter
    result = exp_on_interval_neg_quarter_0(sat_lshift(q, 5))
    rem = (q - a) & U32_MASK
    for k, m in enumerate(_EXP_BARREL):
        result = np.where((rem >> (24 + k)) & 1, srdhm(result, m), result)
    return np.where(a == 0, _I64(I32_MAX), result)


def one_over_one_plus_x(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1: Q0.31 -> Q0.31,
    three Newton-Raphson steps in Q2.29."""
    h = rounding_half_sum(a, I32_MAX)
    x = wrap_i32(1515870810 + srdhm(h, -1010580540))
    for _ in range(3):
        one_minus = wrap_i32((1 << 29) - srdhm(h, x))
        x = wrap_i32(x + sat_lshift(srdhm(x, one_minus), 2))
    return sat_lshift(x, 1)


def get_reciprocal(x, digits):
    """TFLite GetReciprocal: (1 / x as Q0.31 of x scaled into [1, 2),
    num_bits_over_unit) for x > 0 in Q(digits).(31 - digits)."""
    x = _i64(x)
    h = clz32(x)
    shifted = np.where(h < 32, ((x & U32_MASK) << np.minimum(h, 31)) & U32_MASK, 0)
    return one_over_one_plus_x(wrap_i32(shifted - (1 << 31))), digits - h
