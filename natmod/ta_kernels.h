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

/* ---- int8 inference kernels (ABI 2): NHWC, TFLite Micro reference
 * semantics. Every kernel below validates its geometry and parameters
 * first and returns a TA_ERR_* code without writing anything when one is
 * off. Loops stay free of division except one per output element in
 * ta_avg_pool. ---- */

#define TA_DIM_MAX 65535
#define TA_AVG_POOL_K_MAX 4096   /* |window sum| <= 4096 * 4096 * 128 = 2^31 */
#define TA_SOFTMAX_N_MAX 511     /* see ta_softmax */
#define TA_ADD_LEFT_SHIFT 20     /* TFLite's int8 ADD left_shift */

/* Geometry of one spatial op over NHWC tensors:
 *   input  [batch][in_h][in_w][in_c], output [batch][out_h][out_w][out_c]
 *   window k_h x k_w, strides, explicit top/left padding (the bottom/right
 *   padding is implied by out_h/out_w). Output pixel (oy, ox) reads input
 *   rows oy * stride_h - pad_top + ky, ky in [0, k_h), and columns
 *   ox * stride_w - pad_left + kx; cells outside the input are skipped
 *   (TFLite's zero padding: they add nothing to the sum).
 * Valid (ta_check_geom): batch >= 1; in_h, in_w, in_c, out_c, stride_h,
 * stride_w in [1, 65535]; k_h, k_w in [1, k_max]; pad_top in [0, k_h - 1],
 * pad_left in [0, k_w - 1]; out_h >= 1 with (out_h - 1) * stride_h <=
 * in_h - 1 + pad_top (every window overlaps the input), out_w likewise; the
 * element counts batch*in_h*in_w*in_c and batch*out_h*out_w*out_c at most
 * 2^31 - 1. */
typedef struct {
    int32_t batch;
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
} ta_geom_t;

/* TA_OK or TA_ERR_NULL / TA_ERR_DIM for the rules above. */
int ta_check_geom(const ta_geom_t *g, int32_t k_max);

/* 2-D convolution, TFLite int8 per-channel (reference ConvPerChannel),
 * dilation 1, one group.
 *   inp int8 NHWC, g->in_c channels; out int8 NHWC, g->out_c channels
 *   weights int8 [out_c][k_h][k_w][in_c] (TFLite OHWI), symmetric
 *   bias, mult, shift: int32 [out_c], little-endian bytes
 * For each output element (b, oy, ox, oc):
 *   acc = bias[oc] + sum over in-image (ky, kx) and ic of
 *         (inp[b][iy][ix][ic] - in_zp) * weights[oc][ky][kx][ic]
 *         (iy = oy*stride_h - pad_top + ky, ix = ox*stride_w - pad_left + kx)
 *         in int32 wrapping modulo 2^32 (exact while k_h*k_w*in_c <= 65535;
 *         TFLite's int32 accumulator wraps the same way on hardware)
 *   out = clamp(requant(acc, mult[oc], shift[oc]) + out_zp, act_min, act_max)
 *         (ta_requant_i8)
 * Also valid: out_c*k_h*k_w*in_c <= 2^31 - 1; in_zp, out_zp, act_min,
 * act_max in [-128, 127]; act_min <= act_max; shift[oc] in [-31, 30];
 * mult[oc] >= 0. */
int ta_conv2d(int8_t *out, const int8_t *inp, const int8_t *weights,
              const uint8_t *bias, const uint8_t *mult, const uint8_t *shift,
              const ta_geom_t *g, int32_t in_zp, int32_t out_zp,
              int32_t act_min, int32_t act_max);

/* Depthwise 2-D convolution, TFLite int8 per-channel (reference
 * DepthwiseConvPerChannel), dilation 1:
 *   g->out_c == g->in_c * depth_multiplier, depth_multiplier >= 1
 *   weights int8 [k_h][k_w][out_c] (TFLite 1HWO); bias, mult, shift [out_c]
 * Output channel oc = ic * depth_multiplier + m reads only input channel ic:
 *   acc = bias[oc] + sum over in-image (ky, kx) of
 *         (inp[b][iy][ix][ic] - in_zp) * weights[ky][kx][oc]   (wrapping)
 *   out = clamp(requant(acc, mult[oc], shift[oc]) + out_zp, act_min, act_max)
 * Other ranges as ta_conv2d, with k_h*k_w*out_c <= 2^31 - 1. */
int ta_depthwise_conv2d(int8_t *out, const int8_t *inp, const int8_t *weights,
                        const uint8_t *bias, const uint8_t *mult,
                        const uint8_t *shift, const ta_geom_t *g,
                        int32_t depth_multiplier, int32_t in_zp,
                        int32_t out_zp, int32_t act_min, int32_t act_max);

/* Average pooling, TFLite int8 (reference AveragePool; input and output
 * share scale and zero point, so there is no requantization):
 *   g->in_c == g->out_c (channels), k_h, k_w in [1, 4096]
 *   sum = sum of inp over the count >= 1 in-image cells of the window
 *         (exact: |sum| <= 4096*4096*128)
 *   avg = sum > 0 ? (sum + count/2) / count : (sum - count/2) / count
 *         (C division, toward zero: round half away from zero)
 *   out = clamp(avg, act_min, act_max)
 * Global average pooling is this kernel with k_h = in_h, k_w = in_w,
 * pad 0, out 1 x 1. */
int ta_avg_pool(int8_t *out, const int8_t *inp, const ta_geom_t *g,
                int32_t act_min, int32_t act_max);

/* Max pooling, TFLite int8 (reference MaxPool): g->in_c == g->out_c,
 * k_h, k_w in [1, 65535];
 *   out = clamp(max(-128, max of inp over the in-image window cells),
 *               act_min, act_max) */
int ta_max_pool(int8_t *out, const int8_t *inp, const ta_geom_t *g,
                int32_t act_min, int32_t act_max);

/* Parameters of ta_add (TFLite int8 ADD, ArithmeticParams). Zero points and
 * activation bounds in [-128, 127], act_min <= act_max; multipliers in
 * [0, 2^31 - 1]; shifts in [-31, 0] (QuantizeMultiplierSmallerThanOneExp). */
typedef struct {
    int32_t in1_zp, in1_mult, in1_shift;
    int32_t in2_zp, in2_mult, in2_shift;
    int32_t out_zp, out_mult, out_shift;
    int32_t act_min, act_max;
} ta_add_params_t;

/* Element-wise add of two int8 tensors of n elements (no broadcasting),
 * TFLite reference AddFunc with left_shift = 20. With
 * M(x, m, s) = ta_mul_by_quantized_mult(x, m, s) (s <= 0: TFLite's
 * MultiplyByQuantizedMultiplierSmallerThanOneExp):
 *   a = M((in1[k] - in1_zp) * 2^20, in1_mult, in1_shift)
 *   b = M((in2[k] - in2_zp) * 2^20, in2_mult, in2_shift)
 *   out[k] = clamp(M(a + b, out_mult, out_shift) + out_zp, act_min, act_max)
 * Exact in int32: |x * 2^20| <= 255 * 2^20 and |M(x)| <= |x|.
 * n >= 0; out may alias in1 or in2 (each element is read before written). */
int ta_add(int8_t *out, const int8_t *in1, const int8_t *in2, int32_t n,
           const ta_add_params_t *p);

/* Softmax over the last axis, int8 -> int8, TFLite Micro reference int8
 * Softmax (output zero point -128, scale 1/256), per row of n values:
 *   max   = max over the row (at least -128)
 *   for each c with diff = inp[c] - max >= diff_min:
 *     e_c = ta_exp_on_negative_values_q5(
 *             ta_mul_by_quantized_mult_gt1(diff, input_multiplier,
 *                                          input_left_shift))
 *   sum   = sum of ta_rounding_rshift(e_c, 12)          (Q12.19)
 *   recip = ta_get_reciprocal(sum, 12, &bits);  exponent = bits + 23
 *   out[c] = clamp(ta_rounding_rshift(ta_srdhm(recip, e_c), exponent) - 128,
 *                  -128, 127), or -128 where diff < diff_min.
 * rows >= 1; n in [1, 511]: sum <= n * 2^19 < 2^28, so exponent <= 31 for
 * every input (TFLite checks exponent <= 31 and aborts otherwise);
 * input_multiplier >= 0; input_left_shift in [0, 31]; diff_min <= 0 (so
 * the row maximum always counts and sum > 0). The parameters are TFLite's
 * SoftmaxParams input_multiplier, input_left_shift, diff_min (docs/kernels.md
 * gives their derivation from the input scale and beta). */
int ta_softmax(int8_t *out, const int8_t *inp, int32_t rows, int32_t n,
               int32_t input_multiplier, int32_t input_left_shift,
               int32_t diff_min);

/* Argmax over the last axis: for each of the rows rows of n int8 values,
 * the index of the largest value, ties to the lowest index (TFLite ARG_MAX
 * with std::greater), stored as int32 little-endian at out + 4 * row.
 * rows >= 1, n in [1, 65535]. */
int ta_argmax(uint8_t *out, const int8_t *inp, int32_t rows, int32_t n);

/* Helpers shared by the kernel files (not part of the binding's API). */
static inline int ta_in_i8(int32_t v) {
    return v >= -128 && v <= 127;
}

/* The per-channel requantization checks of docs/kernels.md, in its order: zero
 * points and activation bounds in [-128, 127], act_min <= act_max, every shift in
 * [-31, 30], then every mult >= 0. Returns TA_OK or the first failing status. */
int ta_check_quant(const uint8_t *mult, const uint8_t *shift, int32_t n_ch,
                   int32_t zp_a, int32_t zp_b, int32_t act_min, int32_t act_max);

/* The in-image part [*lo, *hi) of a window of k cells starting at origin over
 * [0, size); never empty under ta_check_geom. */
void ta_window(int32_t origin, int32_t k, int32_t size, int32_t *lo, int32_t *hi);

#endif /* TA_KERNELS_H */
