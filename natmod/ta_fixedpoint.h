/*
 * tinyadapt fixed-point helpers: the single C definition of the integer rules
 * that host_sim/_tinyadapt/fixedpoint.py mirrors bit for bit.
 *
 * C99, no MicroPython headers, no allocation, no globals, no float.
 * Nothing here relies on implementation-defined or undefined C: no signed
 * overflow, no shift of a negative value, no unsigned->signed conversion of an
 * out-of-range value, no multi-byte load through a cast pointer (buffers are
 * unaligned memoryview slices; Cortex-M0 faults on unaligned word access).
 *
 * Portability: no libgcc helper is needed on armv6m (no 64-bit multiply, no
 * division, only constant 64-bit shifts, which gcc expands inline).
 */
#ifndef TA_FIXEDPOINT_H
#define TA_FIXEDPOINT_H

#include <stddef.h>
#include <stdint.h>

/* Two's complement reinterpretation of a uint32 as int32, done arithmetically
 * (a plain cast of a value > INT32_MAX is implementation-defined in C99). */
int32_t ta_u32_to_i32(uint32_t u);

/* Arithmetic shift right, i.e. floor(x / 2^n), for n in [0, 31].
 * For negative x it uses ~x >> n (a shift of a non-negative value), since
 * floor(x / 2^n) == ~floor(~x / 2^n). n outside [0, 31] is clamped. */
int32_t ta_asr(int32_t x, int n);

/* TFLite/gemmlowp RoundingDivideByPOT: x / 2^n rounded to nearest, ties away
 * from zero. With mask = 2^n - 1, r = x & mask (the non-negative remainder of
 * the floor division) and t = (mask >> 1) + (x < 0 ? 1 : 0):
 *     result = floor(x / 2^n) + (r > t ? 1 : 0).
 * Examples: (5,1) -> 3, (-5,1) -> -3, (-4,2) -> -1, (-6,2) -> -2.
 * n in [0, 31]; n outside that range is clamped (callers validate first). */
int32_t ta_rounding_rshift(int32_t x, int n);

/* gemmlowp SaturatingRoundingDoublingHighMul: the high 32 bits of 2*a*b,
 * rounded. With p = (int64)a * b:
 *     nudge  = p >= 0 ? 2^30 : 1 - 2^30
 *     result = trunc((p + nudge) / 2^31)   (C division, toward zero)
 * and a == b == INT32_MIN saturates to INT32_MAX (the only overflow).
 * Ties therefore round toward +infinity: p = 2^30 -> 1, p = -2^30 -> 0. */
int32_t ta_srdhm(int32_t a, int32_t b);

/* TFLite MultiplyByQuantizedMultiplier, double rounding:
 *     left  = max(shift, 0), right = max(-shift, 0)
 *     y     = saturate_int32(x * 2^left)       (exact, then clamped)
 *     result = ta_rounding_rshift(ta_srdhm(y, mult), right)
 * mult in [0, 2^31 - 1] (any int32 is computed without UB), shift in
 * [-31, 30]; a shift outside that range is clamped (callers validate). */
int32_t ta_mul_by_quantized_mult(int32_t x, int32_t mult, int shift);

/* Clamp x to [lo, hi]: x < lo -> lo, else x > hi -> hi, else x.
 * (With lo > hi the result is lo when x < lo, else hi when x > hi; callers
 * validate lo <= hi.) */
int32_t ta_saturate(int32_t x, int32_t lo, int32_t hi);

/* Little-endian byte-wise access to 32-bit values at any alignment. */
uint32_t ta_load_u32(const uint8_t *p);
int32_t ta_load_i32(const uint8_t *p);
void ta_store_u32(uint8_t *p, uint32_t v);
void ta_store_i32(uint8_t *p, int32_t v);

/* xorshift32 (Marsaglia 13/17/5), all in uint32 arithmetic modulo 2^32:
 *     s ^= s << 13; s ^= s >> 17; s ^= s << 5
 * For each of the n_words words: advance s, then store s little-endian at
 * out + 4*k. Returns the final state (the next call's seed). A seed of 0 is a
 * fixed point of the generator and is refused: nothing is written and 0 is
 * returned. */
uint32_t ta_xorshift32_fill(uint8_t *out, size_t n_words, uint32_t seed);

/* ---- additions for the int8 inference kernels (ABI 2) ---- */

/* Exact 32x32 -> 64 unsigned product, built from 16-bit halves so armv6m
 * needs no libgcc multiply helper. */
uint64_t ta_umul32_wide(uint32_t a, uint32_t b);

/* Two's complement wrapping add / subtract of int32 (modulo 2^32), done in
 * uint32. gemmlowp's plain Add/Sub leave overflow undefined; where they do
 * not overflow these give the same value. */
int32_t ta_wadd(int32_t a, int32_t b);
int32_t ta_wsub(int32_t a, int32_t b);

/* Saturating x * 2^n, n in [0, 31] (clamped): the exact product clamped to
 * [INT32_MIN, INT32_MAX]. It is also gemmlowp's
 * SaturatingRoundingMultiplyByPOT<n> for n > 0 (threshold 2^(31-n) - 1). */
int32_t ta_sat_lshift(int32_t x, int n);

/* TFLite MultiplyByQuantizedMultiplierGreaterThanOne (double-rounding build):
 *     ta_srdhm(ta_sat_lshift(x, left_shift), mult),   left_shift in [0, 31]
 * TFLite computes x * (1 << left_shift) without saturation (undefined on
 * overflow); softmax's diff_min keeps |x| * 2^left_shift < 2^31, where both
 * agree. */
int32_t ta_mul_by_quantized_mult_gt1(int32_t x, int32_t mult, int left_shift);

/* gemmlowp RoundingHalfSum: with s = (int64)a + b,
 *     (s + (s >= 0 ? 1 : -1)) / 2,   division truncating toward zero,
 * i.e. (a + b) / 2 rounded half away from zero. */
int32_t ta_rounding_half_sum(int32_t a, int32_t b);

/* Number of leading zero bits of x (32 for x == 0). */
int ta_clz32(uint32_t x);

/* gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl, Q0.31 in
 * and out, for a in [-2^29, 0) (i.e. [-1/4, 0)). All products are ta_srdhm,
 * all sums wrap (ta_wadd), RDP = ta_rounding_rshift:
 *     x   = a + 2^28                       (a + 1/8)
 *     x2  = x*x, x3 = x2*x, x4 = x2*x2
 *     t   = RDP((RDP(x4, 2) + x3) * 715827883 + x2, 1)   (715827883 = 1/3)
 *     result = 1895147668 + 1895147668 * (x + t)      (1895147668 = exp(-1/8))
 * (the Taylor expansion of exp around -1/8, to the 4th power). */
int32_t ta_exp_on_interval_neg_quarter_0(int32_t a);

/* gemmlowp exp_on_negative_values for a Q5.26 input (the int8 softmax's
 * FixedPoint<int32, 5>), result Q0.31:
 *     q      = a & (2^24 - 1)  minus 2^24        (in [-1/4, 0))
 *     result = ta_exp_on_interval_neg_quarter_0(q * 32)   (Rescale<0>, exact)
 *     rem    = q - a  (uint32 bits)
 *     for k, m in (24, 1672461947) (25, 1302514674) (26, 790015084)
 *                 (27, 290630308) (28, 39332535) (29, 720401) (30, 242):
 *         if rem bit k is set: result = ta_srdhm(result, m)    (m = exp(-2^(k-26)))
 *     a == 0 -> INT32_MAX (One).
 * Meant for a <= 0; any int32 is computed without undefined behaviour. */
int32_t ta_exp_on_negative_values_q5(int32_t a);

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: 1 / (1 + a) for a in [0, 1) as
 * Q0.31, Newton-Raphson in Q2.29 (F2::One = 2^29):
 *     h = ta_rounding_half_sum(a, INT32_MAX)
 *     x = 1515870810 + h * (-1010580540)             (48/17 - 32/17 * h)
 *     3 times: x = x + sat_lshift(x * (2^29 - h * x), 2)
 *     result = ta_sat_lshift(x, 1)
 * ("*" is ta_srdhm, "+"/"-" wrap). */
int32_t ta_one_over_one_plus_x(int32_t a);

/* TFLite GetReciprocal: x > 0 in Q(digits).(31-digits); with
 * h = ta_clz32(x): *num_bits_over_unit = digits - h and the result is
 * ta_one_over_one_plus_x((x << h) - 2^31) (uint32 arithmetic). x == 0 is
 * treated as if x << 32 were 0. */
int32_t ta_get_reciprocal(int32_t x, int digits, int *num_bits_over_unit);

/* clamp(ta_mul_by_quantized_mult(acc, mult, shift) + out_zp, act_min, act_max)
 * with an exact "+ out_zp": the product is first clamped to [-256, 255],
 * which cannot change a result that ends in [-128, 127]. The requantization
 * step of every int8 kernel (TFLite adds the zero point in int32). */
int8_t ta_requant_i8(int32_t acc, int32_t mult, int shift, int32_t out_zp,
                     int32_t act_min, int32_t act_max);

#endif /* TA_FIXEDPOINT_H */
