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
