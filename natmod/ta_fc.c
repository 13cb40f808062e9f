/* tinyadapt fully connected and requantize kernels; the integer rules are
 * stated in ta_kernels.h. Loops avoid division and modulo (Cortex-M0 has no
 * divide instruction) and index with size_t so no int32 product can wrap. */
#include "ta_kernels.h"

/* Shared scalar checks and per-channel element checks, in the order of
 * docs/kernels.md: zero points and activation bounds, act_min <= act_max,
 * then every shift, then every mult. */
int ta_check_quant(const uint8_t *mult, const uint8_t *shift,
                       int32_t n_ch, int32_t zp_a, int32_t zp_b,
                       int32_t act_min, int32_t act_max) {
    int32_t c;
    if (!ta_in_i8(zp_a) || !ta_in_i8(zp_b) || !ta_in_i8(act_min) ||
        !ta_in_i8(act_max)) {
        return TA_ERR_RANGE;
    }
    if (act_min > act_max) {
        return TA_ERR_ACT;
    }
    for (c = 0; c < n_ch; c++) {
        int32_t s = ta_load_i32(shift + 4u * (size_t)c);
        if (s < -31 || s > 30) {
            return TA_ERR_SHIFT;
        }
    }
    for (c = 0; c < n_ch; c++) {
        if (ta_load_i32(mult + 4u * (size_t)c) < 0) {
            return TA_ERR_MULT;
        }
    }
    return TA_OK;
}

int ta_fully_connected(int8_t *out, const int8_t *inp, const int8_t *weights,
                       const uint8_t *bias, const uint8_t *mult,
                       const uint8_t *shift, int32_t n_batch, int32_t n_in,
                       int32_t n_out, int32_t in_zp, int32_t out_zp,
                       int32_t act_min, int32_t act_max) {
    int32_t b, o, i;
    int status;
    if (out == NULL || inp == NULL || weights == NULL || bias == NULL ||
        mult == NULL || shift == NULL) {
        return TA_ERR_NULL;
    }
    if (n_batch < 1 || n_in < 1 || n_in > TA_FC_MAX_DIM || n_out < 1 ||
        n_out > TA_FC_MAX_DIM) {
        return TA_ERR_DIM;
    }
    status = ta_check_quant(mult, shift, n_out, in_zp, out_zp, act_min, act_max);
    if (status != TA_OK) {
        return status;
    }
    for (b = 0; b < n_batch; b++) {
        const int8_t *x = inp + (size_t)b * (size_t)n_in;
        int8_t *y = out + (size_t)b * (size_t)n_out;
        const int8_t *w = weights;
        for (o = 0; o < n_out; o++) {
            /* exact: n_in * 255 * 128 < 2^31 */
            int32_t sum = 0;
            uint32_t acc;
            for (i = 0; i < n_in; i++) {
                sum += ((int32_t)x[i] - in_zp) * (int32_t)w[i];
            }
            w += n_in;
            /* bias + sum wraps modulo 2^32, done in unsigned arithmetic */
            acc = ta_load_u32(bias + 4u * (size_t)o) + (uint32_t)sum;
            y[o] = ta_requant_i8(ta_u32_to_i32(acc), ta_load_i32(mult + 4u * (size_t)o),
                                 (int)ta_load_i32(shift + 4u * (size_t)o), out_zp,
                                 act_min, act_max);
        }
    }
    return TA_OK;
}

int ta_requantize(int8_t *out, const uint8_t *inp, const uint8_t *mult,
                  const uint8_t *shift, int32_t n, int32_t n_ch,
                  int32_t out_zp, int32_t act_min, int32_t act_max) {
    int32_t k, c;
    int status;
    if (out == NULL || inp == NULL || mult == NULL || shift == NULL) {
        return TA_ERR_NULL;
    }
    /* n need not be checked as a multiple of n_ch here: the channel index
     * stays below n_ch whatever n is, and a modulo would pull a libgcc
     * division helper into armv6m builds. The binding checks it. */
    if (n < 0 || n_ch < 1) {
        return TA_ERR_DIM;
    }
    /* out_zp stands in for the absent input zero point in the shared check */
    status = ta_check_quant(mult, shift, n_ch, out_zp, out_zp, act_min, act_max);
    if (status != TA_OK) {
        return status;
    }
    c = 0;
    for (k = 0; k < n; k++) {
        out[k] = ta_requant_i8(ta_load_i32(inp + 4u * (size_t)k),
                               ta_load_i32(mult + 4u * (size_t)c),
                               (int)ta_load_i32(shift + 4u * (size_t)c), out_zp,
                               act_min, act_max);
        if (++c == n_ch) {
            c = 0;
        }
    }
    return TA_OK;
}
