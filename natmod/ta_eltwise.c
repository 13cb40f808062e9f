/* tinyadapt element-wise and last-axis kernels (add, softmax, argmax); the
 * integer rules are stated in ta_kernels.h, the fixed-point helpers they use
 * in ta_fixedpoint.h. */
#include "ta_kernels.h"

int ta_add(int8_t *out, const int8_t *in1, const int8_t *in2, int32_t n,
           const ta_add_params_t *p) {
    int32_t k;
    if (out == NULL || in1 == NULL || in2 == NULL || p == NULL) {
        return TA_ERR_NULL;
    }
    if (n < 0) {
        return TA_ERR_DIM;
    }
    if (!ta_in_i8(p->in1_zp) || !ta_in_i8(p->in2_zp) ||
        !ta_in_i8(p->out_zp) || !ta_in_i8(p->act_min) ||
        !ta_in_i8(p->act_max)) {
        return TA_ERR_RANGE;
    }
    if (p->act_min > p->act_max) {
        return TA_ERR_ACT;
    }
    if (p->in1_shift < -31 || p->in1_shift > 0 || p->in2_shift < -31 ||
        p->in2_shift > 0 || p->out_shift < -31 || p->out_shift > 0) {
        return TA_ERR_SHIFT;
    }
    if (p->in1_mult < 0 || p->in2_mult < 0 || p->out_mult < 0) {
        return TA_ERR_MULT;
    }
    for (k = 0; k < n; k++) {
        /* |x| <= 255 * 2^20 < 2^28: the shifts and the sum stay exact */
        int32_t a = ((int32_t)in1[k] - p->in1_zp) * ((int32_t)1 << TA_ADD_LEFT_SHIFT);
        int32_t b = ((int32_t)in2[k] - p->in2_zp) * ((int32_t)1 << TA_ADD_LEFT_SHIFT);
        a = ta_mul_by_quantized_mult(a, p->in1_mult, (int)p->in1_shift);
        b = ta_mul_by_quantized_mult(b, p->in2_mult, (int)p->in2_shift);
        out[k] = ta_requant_i8(a + b, p->out_mult, (int)p->out_shift, p->out_zp,
                               p->act_min, p->act_max);
    }
    return TA_OK;
}

/* exp(beta * input_scale * diff) in Q0.31 for diff = x - max <= 0 */
static int32_t softmax_exp(int32_t diff, int32_t input_multiplier,
                           int32_t input_left_shift) {
    return ta_exp_on_negative_values_q5(
        ta_mul_by_quantized_mult_gt1(diff, input_multiplier, (int)input_left_shift));
}

int ta_softmax(int8_t *out, const int8_t *inp, int32_t rows, int32_t n,
               int32_t input_multiplier, int32_t input_left_shift,
               int32_t diff_min) {
    int32_t r, c;
    if (out == NULL || inp == NULL) {
        return TA_ERR_NULL;
    }
    if (rows < 1 || n < 1 || n > TA_SOFTMAX_N_MAX) {
        return TA_ERR_DIM;
    }
    if (input_multiplier < 0 || input_left_shift < 0 || input_left_shift > 31 ||
        diff_min > 0) {
        return TA_ERR_RANGE;
    }
    for (r = 0; r < rows; r++) {
        const int8_t *x = inp + (size_t)r * (size_t)n;
        int8_t *y = out + (size_t)r * (size_t)n;
        int32_t max = -128, sum = 0, recip;
        int bits, exponent;
        for (c = 0; c < n; c++) {
            max = x[c] > max ? x[c] : max;
        }
        for (c = 0; c < n; c++) {
            int32_t diff = (int32_t)x[c] - max;
            if (diff >= diff_min) {
                /* Rescale<12>: Q0.31 -> Q12.19; n <= 511 keeps sum < 2^28 */
                int32_t e = softmax_exp(diff, input_multiplier, input_left_shift);
                sum += ta_rounding_rshift(e, 12);
            }
        }
        /* sum >= 2^19: the row maximum has diff 0 >= diff_min, exp 1 */
        recip = ta_get_reciprocal(sum, 12, &bits);
        exponent = bits + 31 - 8; /* in [23, 31] for 2^19 <= sum < 2^28 */
        for (c = 0; c < n; c++) {
            int32_t diff = (int32_t)x[c] - max;
            int32_t v = -128;
            if (diff >= diff_min) {
                int32_t e = softmax_exp(diff, input_multiplier, input_left_shift);
                v = ta_rounding_rshift(ta_srdhm(recip, e), exponent) - 128;
                v = ta_saturate(v, -128, 127);
            }
            /* read x[c] before writing y[c]: out may alias inp */
            y[c] = (int8_t)v;
        }
    }
    return TA_OK;
}

int ta_argmax(uint8_t *out, const int8_t *inp, int32_t rows, int32_t n) {
    int32_t r, c;
    if (out == NULL || inp == NULL) {
        return TA_ERR_NULL;
    }
    if (rows < 1 || n < 1 || n > TA_DIM_MAX) {
        return TA_ERR_DIM;
    }
    for (r = 0; r < rows; r++) {
        const int8_t *x = inp + (size_t)r * (size_t)n;
        int32_t best = 0;
        for (c = 1; c < n; c++) {
            if (x[c] > x[best]) { /* strictly greater: ties keep the lowest */
                best = c;
            }
        }
        ta_store_i32(out + 4u * (size_t)r, best);
    }
    return TA_OK;
}
