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

#endif /* TA_FIXEDPOINT_H */
