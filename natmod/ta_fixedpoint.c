/* tinyadapt fixed-point helpers; the rules are stated in ta_fixedpoint.h. */
#include "ta_fixedpoint.h"

#define TA_I32_MAX ((int32_t)0x7FFFFFFF)
#define TA_I32_MIN (-TA_I32_MAX - 1)

int32_t ta_u32_to_i32(uint32_t u) {
    if (u <= 0x7FFFFFFFu) {
        return (int32_t)u;
    }
    /* u >= 2^31: value is u - 2^32 == -(int32)(~u) - 1, and ~u <= INT32_MAX */
    return -(int32_t)(~u) - 1;
}

static int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

int32_t ta_asr(int32_t x, int n) {
    n = clamp_int(n, 0, 31);
    if (x >= 0) {
        return x >> n;
    }
    /* ~x is non-negative, so shifting it is well defined */
    return ~((~x) >> n);
}

int32_t ta_rounding_rshift(int32_t x, int n) {
    int32_t mask, remainder, threshold;
    n = clamp_int(n, 0, 31);
    /* unsigned shift: 1 << 31 would overflow a signed int */
    mask = (int32_t)(((uint32_t)1 << n) - 1u);
    remainder = x & mask;
    threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    /* floor(x / 2^n) <= 2^30 for n >= 1, and for n == 0 remainder is 0, so
     * the +1 cannot overflow */
    return ta_asr(x, n) + (remainder > threshold ? 1 : 0);
}

/* Exact 32x32 -> 64 unsigned product from four 16x16 -> 32 products, so
 * armv6m builds need no libgcc multiply helper (__aeabi_lmul). */
static uint64_t umul32_wide(uint32_t a, uint32_t b) {
    uint32_t al = a & 0xFFFFu, ah = a >> 16;
    uint32_t bl = b & 0xFFFFu, bh = b >> 16;
    return ((uint64_t)(ah * bh) << 32) + ((uint64_t)(al * bh) << 16) +
           ((uint64_t)(ah * bl) << 16) + (uint64_t)(al * bl);
}

static uint32_t abs_u32(int32_t x) {
    /* defined for INT32_MIN too: unsigned negation is modulo 2^32 */
    return x < 0 ? 0u - (uint32_t)x : (uint32_t)x;
}

int32_t ta_srdhm(int32_t a, int32_t b) {
    uint64_t m;
    if (a == TA_I32_MIN && b == TA_I32_MIN) {
        return TA_I32_MAX;
    }
    /* m = |a * b| <= 2^62 - 2^31 here */
    m = umul32_wide(abs_u32(a), abs_u32(b));
    if ((a < 0) == (b < 0)) {
        /* p = m >= 0: trunc((p + 2^30) / 2^31) == floor(...); the quotient
         * is at most 2^31 - 1, so the narrowing keeps the value */
        return (int32_t)((m + ((uint64_t)1 << 30)) >> 31);
    }
    /* p = -m <= 0: trunc((p + 1 - 2^30) / 2^31)
     *            == -floor((m + 2^30 - 1) / 2^31)   (also right for m == 0) */
    return -(int32_t)((m + ((uint64_t)1 << 30) - 1u) >> 31);
}

int32_t ta_mul_by_quantized_mult(int32_t x, int32_t mult, int shift) {
    int left, right;
    int32_t limit, y;
    shift = clamp_int(shift, -31, 30);
    left = shift > 0 ? shift : 0;
    right = shift > 0 ? 0 : -shift;
    /* x * 2^left saturated to int32 without a 64-bit product:
     * it fits iff -2^(31-left) <= x <= 2^(31-left) - 1 */
    limit = (int32_t)(0x7FFFFFFFu >> left);
    if (x > limit) {
        y = TA_I32_MAX;
    } else if (x < -limit - 1) {
        y = TA_I32_MIN;
    } else {
        y = x * (int32_t)((uint32_t)1 << left);
    }
    return ta_rounding_rshift(ta_srdhm(y, mult), right);
}

int32_t ta_saturate(int32_t x, int32_t lo, int32_t hi) {
    if (x < lo) {
        return lo;
    }
    if (x > hi) {
        return hi;
    }
    return x;
}

uint32_t ta_load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

int32_t ta_load_i32(const uint8_t *p) {
    return ta_u32_to_i32(ta_load_u32(p));
}

void ta_store_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)((v >> 24) & 0xFFu);
}

void ta_store_i32(uint8_t *p, int32_t v) {
    /* int32 -> uint32 conversion is defined (modulo 2^32) */
    ta_store_u32(p, (uint32_t)v);
}

uint32_t ta_xorshift32_fill(uint8_t *out, size_t n_words, uint32_t seed) {
    uint32_t s = seed & 0xFFFFFFFFu;
    size_t k;
    if (s == 0u) {
        return 0u;
    }
    for (k = 0; k < n_words; k++) {
        /* masks keep the rule exact should uint32_t ever promote wider */
        s ^= (s << 13) & 0xFFFFFFFFu;
        s ^= s >> 17;
        s ^= (s << 5) & 0xFFFFFFFFu;
        ta_store_u32(out + 4u * k, s);
    }
    return s;
}

/* ---- additions for the int8 inference kernels (ABI 2) ---- */

uint64_t ta_umul32_wide(uint32_t a, uint32_t b) {
    return umul32_wide(a, b);
}

int32_t ta_wadd(int32_t a, int32_t b) {
    return ta_u32_to_i32((uint32_t)a + (uint32_t)b);
}

int32_t ta_wsub(int32_t a, int32_t b) {
    return ta_u32_to_i32((uint32_t)a - (uint32_t)b);
}

int32_t ta_sat_lshift(int32_t x, int n) {
    int32_t limit;
    n = clamp_int(n, 0, 31);
    /* x * 2^n fits iff -2^(31-n) <= x <= 2^(31-n) - 1 */
    limit = (int32_t)(0x7FFFFFFFu >> n);
    if (x > limit) {
        return TA_I32_MAX;
    }
    if (x < -limit - 1) {
        return TA_I32_MIN;
    }
    /* in range: the unsigned shift is the two's complement product */
    return ta_u32_to_i32((uint32_t)x << n);
}

int32_t ta_mul_by_quantized_mult_gt1(int32_t x, int32_t mult, int left_shift) {
    return ta_srdhm(ta_sat_lshift(x, left_shift), mult);
}

int32_t ta_rounding_half_sum(int32_t a, int32_t b) {
    int64_t s = (int64_t)a + (int64_t)b;
    if (s >= 0) {
        /* (s + 1) / 2 <= 2^31 - 1 since s <= 2^32 - 2 */
        return (int32_t)(((uint64_t)s + 1u) >> 1);
    }
    /* trunc((s - 1) / 2) == -floor((-s + 1) / 2), which is >= -2^31 */
    return (int32_t)(-(int64_t)(((uint64_t)(-s) + 1u) >> 1));
}

int ta_clz32(uint32_t x) {
    int n = 0;
    if (x == 0u) {
        return 32;
    }
    while (!(x & 0x80000000u)) {
        x <<= 1;
        n++;
    }
    return n;
}

int32_t ta_exp_on_interval_neg_quarter_0(int32_t a) {
    const int32_t constant_term = 1895147668;     /* exp(-1/8) in Q0.31 */
    const int32_t constant_1_over_3 = 715827883;  /* 1/3 in Q0.31 */
    int32_t x, x2, x3, x4, t;
    x = ta_wadd(a, (int32_t)1 << 28);
    x2 = ta_srdhm(x, x);
    x3 = ta_srdhm(x2, x);
    x4 = ta_srdhm(x2, x2);
    t = ta_wadd(ta_rounding_rshift(x4, 2), x3);
    t = ta_wadd(ta_srdhm(t, constant_1_over_3), x2);
    t = ta_rounding_rshift(t, 1);
    return ta_wadd(constant_term, ta_srdhm(constant_term, ta_wadd(x, t)));
}

int32_t ta_exp_on_negative_values_q5(int32_t a) {
    /* exp(-2^k) in Q0.31 for k = -2 .. 4, applied for bit 26 + k of rem */
    static const int32_t multipliers[7] = {
        1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242,
    };
    const int32_t one_quarter = (int32_t)1 << 24; /* 1/4 in Q5.26 */
    int32_t q, result;
    uint32_t rem;
    int k;
    q = (a & (one_quarter - 1)) - one_quarter; /* in [-2^24, -1] */
    /* Rescale<0> from Q5.26 to Q0.31 is a saturating * 32, exact here */
    result = ta_exp_on_interval_neg_quarter_0(ta_sat_lshift(q, 5));
    rem = (uint32_t)q - (uint32_t)a;
    for (k = 0; k < 7; k++) {
        if (rem & ((uint32_t)1 << (24 + k))) {
            result = ta_srdhm(result, multipliers[k]);
        }
    }
    return a == 0 ? TA_I32_MAX : result;
}

int32_t ta_one_over_one_plus_x(int32_t a) {
    const int32_t constant_48_over_17 = 1515870810;     /* Q2.29 */
    const int32_t constant_neg_32_over_17 = -1010580540; /* Q2.29 */
    const int32_t f2_one = (int32_t)1 << 29;
    int32_t half_denominator, x;
    int i;
    half_denominator = ta_rounding_half_sum(a, TA_I32_MAX);
    x = ta_wadd(constant_48_over_17,
                ta_srdhm(half_denominator, constant_neg_32_over_17));
    for (i = 0; i < 3; i++) {
        int32_t one_minus = ta_wsub(f2_one, ta_srdhm(half_denominator, x));
        /* x * one_minus is Q4.27; Rescale<2> is a saturating * 4 */
        x = ta_wadd(x, ta_sat_lshift(ta_srdhm(x, one_minus), 2));
    }
    /* ExactMulByPot<-1> makes it Q1.30, Rescale<0> a saturating * 2 */
    return ta_sat_lshift(x, 1);
}

int32_t ta_get_reciprocal(int32_t x, int digits, int *num_bits_over_unit) {
    int headroom_plus_one = ta_clz32((uint32_t)x);
    uint32_t shifted;
    *num_bits_over_unit = digits - headroom_plus_one;
    shifted = headroom_plus_one < 32 ? (uint32_t)x << headroom_plus_one : 0u;
    return ta_one_over_one_plus_x(ta_u32_to_i32(shifted - 0x80000000u));
}

int8_t ta_requant_i8(int32_t acc, int32_t mult, int shift, int32_t out_zp,
                     int32_t act_min, int32_t act_max) {
    int32_t r = ta_mul_by_quantized_mult(acc, mult, shift);
    r = ta_saturate(r, -256, 255) + out_zp;
    return (int8_t)ta_saturate(r, act_min, act_max);
}
