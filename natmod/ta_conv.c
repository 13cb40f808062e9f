/* tinyadapt convolution kernels (conv2d, depthwise_conv2d) and the shared
 * geometry check; the integer rules are stated in ta_kernels.h.
 *
 * Offsets are computed in size_t from dimensions that ta_check_geom bounds
 * (every tensor's element count <= 2^31 - 1), and window origins in int32:
 * the geometry check guarantees (out_h - 1) * stride_h <= in_h - 1 + pad_top,
 * so oy * stride_h never exceeds 2 * 65535. Accumulators are uint32 so that
 * their wrap-around modulo 2^32 is defined C. */
#include "ta_kernels.h"

#define I31_MAX 0x7FFFFFFFu

static int in_dim(int32_t v, int32_t hi) {
    return v >= 1 && v <= hi;
}

/* *p *= f, failing when the product exceeds 2^31 - 1 (no libgcc helper). */
static int mul_i31(uint32_t *p, int32_t f) {
    uint64_t w = ta_umul32_wide(*p, (uint32_t)f);
    if (w > (uint64_t)I31_MAX) {
        return 0;
    }
    *p = (uint32_t)w;
    return 1;
}

/* out_n >= 1 windows of k cells, stride s, first one at -pad, must each
 * overlap [0, in_n): (out_n - 1) * s <= in_n - 1 + pad. All values are in
 * [0, 65535] here, so the product fits uint32. */
static int windows_fit(int32_t in_n, int32_t k, int32_t s, int32_t pad,
                       int32_t out_n) {
    if (pad < 0 || pad > k - 1 || !in_dim(out_n, TA_DIM_MAX)) {
        return 0;
    }
    return (uint32_t)(out_n - 1) * (uint32_t)s <= (uint32_t)(in_n - 1 + pad);
}

int ta_check_geom(const ta_geom_t *g, int32_t k_max) {
    uint32_t n;
    if (g == NULL) {
        return TA_ERR_NULL;
    }
    if (g->batch < 1 || !in_dim(g->in_h, TA_DIM_MAX) ||
        !in_dim(g->in_w, TA_DIM_MAX) || !in_dim(g->in_c, TA_DIM_MAX) ||
        !in_dim(g->out_c, TA_DIM_MAX) || !in_dim(g->k_h, k_max) ||
        !in_dim(g->k_w, k_max) || !in_dim(g->stride_h, TA_DIM_MAX) ||
        !in_dim(g->stride_w, TA_DIM_MAX)) {
        return TA_ERR_DIM;
    }
    if (!windows_fit(g->in_h, g->k_h, g->stride_h, g->pad_top, g->out_h) ||
        !windows_fit(g->in_w, g->k_w, g->stride_w, g->pad_left, g->out_w)) {
        return TA_ERR_DIM;
    }
    n = (uint32_t)g->batch;
    if (!mul_i31(&n, g->in_h) || !mul_i31(&n, g->in_w) ||
        !mul_i31(&n, g->in_c)) {
        return TA_ERR_DIM;
    }
    n = (uint32_t)g->batch;
    if (!mul_i31(&n, g->out_h) || !mul_i31(&n, g->out_w) ||
        !mul_i31(&n, g->out_c)) {
        return TA_ERR_DIM;
    }
    return TA_OK;
}

/* Zero points and activation bounds, act_min <= act_max, then every shift,
 * then every mult: the order of docs/kernels.md. */
/* The in-image part [*lo, *hi) of a window of k cells starting at origin
 * over [0, size); never empty under ta_check_geom. */
void ta_window(int32_t origin, int32_t k, int32_t size, int32_t *lo,
               int32_t *hi) {
    *lo = origin < 0 ? -origin : 0;
    *hi = size - origin < k ? size - origin : k;
}

int ta_conv2d(int8_t *out, const int8_t *inp, const int8_t *weights,
              const uint8_t *bias, const uint8_t *mult, const uint8_t *shift,
              const ta_geom_t *g, int32_t in_zp, int32_t out_zp,
              int32_t act_min, int32_t act_max) {
    int32_t b, oy, ox, oc, ky;
    size_t filter_size, row_len;
    uint32_t n;
    int status;
    if (out == NULL || inp == NULL || weights == NULL || bias == NULL ||
        mult == NULL || shift == NULL || g == NULL) {
        return TA_ERR_NULL;
    }
    status = ta_check_geom(g, TA_DIM_MAX);
    if (status != TA_OK) {
        return status;
    }
    n = (uint32_t)g->out_c;
    if (!mul_i31(&n, g->k_h) || !mul_i31(&n, g->k_w) || !mul_i31(&n, g->in_c)) {
        return TA_ERR_DIM;
    }
    status = ta_check_quant(mult, shift, g->out_c, in_zp, out_zp, act_min, act_max);
    if (status != TA_OK) {
        return status;
    }
    filter_size = (size_t)g->k_h * (size_t)g->k_w * (size_t)g->in_c;
    row_len = (size_t)g->in_w * (size_t)g->in_c;
    for (b = 0; b < g->batch; b++) {
        const int8_t *img = inp + (size_t)b * (size_t)g->in_h * row_len;
        for (oy = 0; oy < g->out_h; oy++) {
            int32_t iy0 = oy * g->stride_h - g->pad_top;
            int32_t ky0, ky1;
            ta_window(iy0, g->k_h, g->in_h, &ky0, &ky1);
            for (ox = 0; ox < g->out_w; ox++) {
                int32_t ix0 = ox * g->stride_w - g->pad_left;
                int32_t kx0, kx1;
                size_t span, i;
                int8_t *y = out + (((size_t)b * (size_t)g->out_h + (size_t)oy) *
                                       (size_t)g->out_w + (size_t)ox) *
                                      (size_t)g->out_c;
                ta_window(ix0, g->k_w, g->in_w, &kx0, &kx1);
                /* consecutive kx are consecutive in_c runs in both the
                 * input row and the filter row: one contiguous span */
                span = (size_t)(kx1 - kx0) * (size_t)g->in_c;
                for (oc = 0; oc < g->out_c; oc++) {
                    uint32_t acc = ta_load_u32(bias + 4u * (size_t)oc);
                    const int8_t *filt = weights + (size_t)oc * filter_size;
                    for (ky = ky0; ky < ky1; ky++) {
                        const int8_t *x = img + (size_t)(iy0 + ky) * row_len +
                                          (size_t)(ix0 + kx0) * (size_t)g->in_c;
                        const int8_t *w = filt + ((size_t)ky * (size_t)g->k_w +
                                                  (size_t)kx0) * (size_t)g->in_c;
                        for (i = 0; i < span; i++) {
                            acc += (uint32_t)(((int32_t)x[i] - in_zp) * (int32_t)w[i]);
                        }
                    }
                    y[oc] = ta_requant_i8(ta_u32_to_i32(acc),
                                          ta_load_i32(mult + 4u * (size_t)oc),
                                          (int)ta_load_i32(shift + 4u * (size_t)oc),
                                          out_zp, act_min, act_max);
                }
            }
        }
    }
    return TA_OK;
}

int ta_depthwise_conv2d(int8_t *out, const int8_t *inp, const int8_t *weights,
                        const uint8_t *bias, const uint8_t *mult,
                        const uint8_t *shift, const ta_geom_t *g,
                        int32_t depth_multiplier, int32_t in_zp,
                        int32_t out_zp, int32_t act_min, int32_t act_max) {
    int32_t b, oy, ox, ic, m, ky, kx;
    size_t row_len;
    uint32_t n;
    int status;
    if (out == NULL || inp == NULL || weights == NULL || bias == NULL ||
        mult == NULL || shift == NULL || g == NULL) {
        return TA_ERR_NULL;
    }
    status = ta_check_geom(g, TA_DIM_MAX);
    if (status != TA_OK) {
        return status;
    }
    /* in_c, depth_multiplier <= 65535: the product fits uint32 */
    if (depth_multiplier < 1 ||
        (uint32_t)g->in_c * (uint32_t)depth_multiplier != (uint32_t)g->out_c) {
        return TA_ERR_DIM;
    }
    n = (uint32_t)g->out_c;
    if (!mul_i31(&n, g->k_h) || !mul_i31(&n, g->k_w)) {
        return TA_ERR_DIM;
    }
    status = ta_check_quant(mult, shift, g->out_c, in_zp, out_zp, act_min, act_max);
    if (status != TA_OK) {
        return status;
    }
    row_len = (size_t)g->in_w * (size_t)g->in_c;
    for (b = 0; b < g->batch; b++) {
        const int8_t *img = inp + (size_t)b * (size_t)g->in_h * row_len;
        for (oy = 0; oy < g->out_h; oy++) {
            int32_t iy0 = oy * g->stride_h - g->pad_top;
            int32_t ky0, ky1;
            ta_window(iy0, g->k_h, g->in_h, &ky0, &ky1);
            for (ox = 0; ox < g->out_w; ox++) {
                int32_t ix0 = ox * g->stride_w - g->pad_left;
                int32_t kx0, kx1;
                int8_t *y = out + (((size_t)b * (size_t)g->out_h + (size_t)oy) *
                                       (size_t)g->out_w + (size_t)ox) *
                                      (size_t)g->out_c;
                ta_window(ix0, g->k_w, g->in_w, &kx0, &kx1);
                for (ic = 0; ic < g->in_c; ic++) {
                    for (m = 0; m < depth_multiplier; m++) {
                        size_t oc = (size_t)ic * (size_t)depth_multiplier +
                                    (size_t)m;
                        uint32_t acc = ta_load_u32(bias + 4u * oc);
                        for (ky = ky0; ky < ky1; ky++) {
                            const int8_t *x = img + (size_t)(iy0 + ky) * row_len +
                                              (size_t)ic;
                            const int8_t *w = weights + (size_t)ky * (size_t)g->k_w *
                                                            (size_t)g->out_c + oc;
                            for (kx = kx0; kx < kx1; kx++) {
                                int32_t xv = x[(size_t)(ix0 + kx) * (size_t)g->in_c];
                                int32_t wv = w[(size_t)kx * (size_t)g->out_c];
                                acc += (uint32_t)((xv - in_zp) * wv);
                            }
                        }
                        y[oc] = ta_requant_i8(ta_u32_to_i32(acc),
                                              ta_load_i32(mult + 4u * oc),
                                              (int)ta_load_i32(shift + 4u * oc),
                                              out_zp, act_min, act_max);
                    }
                }
            }
        }
    }
    return TA_OK;
}
