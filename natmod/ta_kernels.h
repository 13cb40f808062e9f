/*
 * tinyadapt int8 kernels (C99, no MicroPython headers, no allocation, no
 * globals, no float). The binding validates arguments and raises the
 * exceptions of docs/kernels.md; these kernels validate again, defensively,
 * and return a status instead of touching memory when anything is off.
 *
 * int32 tensors arrive as byte pointers (little-endian, any alignment) plus
 * an element count implied by the dimensions; int8 tensors as int8 pointers.
 * Every element check runs before the first byte of `out` is written.
 */
#ifndef TA_KERNELS_H
#define TA_KERNELS_H

#include <stdint.h>

#include "ta_fixedpoint.h"

/* Kernel status codes (0 = ok, negative = error). */
#define TA_OK 0
#define TA_ERR_NULL (-1)  /* a required pointer is NULL */
#define TA_ERR_DIM (-2)   /* a dimension is out of its range */
#define TA_ERR_RANGE (-3) /* zero point or activation bound outside [-128, 127] */
#define TA_ERR_ACT (-4)   /* act_min > act_max */
#define TA_ERR_SHIFT (-5) /* an element of shift outside [-31, 30] */
#define TA_ERR_MULT (-6)  /* an element of mult is negative */

#define TA_FC_MAX_DIM 65535

/* Fully connected layer, TFLite int8 per-channel scheme.
 *   inp     int8  [n_batch][n_in]
 *   weights int8  [n_out][n_in], symmetric (zero point 0)
 *   bias, mult, shift: int32 [n_out], little-endian bytes
 *   out     int8  [n_batch][n_out]
 * For each b, o:
 *   sum = sum_i (inp[b][i] - in_zp) * weights[o][i]
 *         exact in int32: |term| <= 255 * 128 and n_in <= 65535
 *   acc = bias[o] + sum, wrapping modulo 2^32 (two's complement, as int32
 *         hardware does; only a bias near the int32 limits can wrap)
 *   out[b][o] = clamp(ta_mul_by_quantized_mult(acc, mult[o], shift[o])
 *                     + out_zp, act_min, act_max)
 *   where the "+ out_zp" is exact (not int32-wrapping): the requantized value
 *   may be near INT32_MAX, so it is first clamped to [-256, 255], which leaves
 *   the final clamp to [act_min, act_max] within [-128, 127] unchanged.
 * Ranges: n_batch >= 1; n_in, n_out in [1, 65535]; in_zp, out_zp, act_min,
 * act_max in [-128, 127]; act_min <= act_max; shift[o] in [-31, 30];
 * mult[o] >= 0. Returns TA_OK or a TA_ERR_* code (nothing written then). */
int ta_fully_connected(int8_t *out, const int8_t *inp, const int8_t *weights,
                       const uint8_t *bias, const uint8_t *mult,
                       const uint8_t *shift, int32_t n_batch, int32_t n_in,
                       int32_t n_out, int32_t in_zp, int32_t out_zp,
                       int32_t act_min, int32_t act_max);

/* Requantize int32 values to int8, per channel, channel last.
 *   inp  int32 [n] (little-endian bytes), n = count * n_ch
 *   mult, shift: int32 [n_ch]
 *   out  int8  [n]
 *   out[k] = clamp(ta_mul_by_quantized_mult(inp[k], mult[k % n_ch],
 *                  shift[k % n_ch]) + out_zp, act_min, act_max)
 *   with the same exact "+ out_zp" as ta_fully_connected.
 * Ranges: n >= 0 (a multiple of n_ch: the binding checks it; any n is
 * memory-safe here); n_ch >= 1; out_zp, act_min, act_max
 * in [-128, 127]; act_min <= act_max; shift in [-31, 30]; mult >= 0.
 * In-place use (out aliasing the start of inp) is safe: out[k] lies at or
 * before the bytes of inp[k], which are read first. */
int ta_requantize(int8_t *out, const uint8_t *inp, const uint8_t *mult,
                  const uint8_t *shift, int32_t n, int32_t n_ch,
                  int32_t out_zp, int32_t act_min, int32_t act_max);

/* CRC-32 of n bytes continuing from crc (0 to start), as zlib.crc32. */
uint32_t ta_crc32(const uint8_t *data, size_t n, uint32_t crc);

#endif /* TA_KERNELS_H */
