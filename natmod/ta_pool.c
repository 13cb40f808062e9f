/* tinyadapt pooling kernels (avg_pool, max_pool); the integer rules are
 * stated in ta_kernels.h. Geometry is checked by ta_check_geom (ta_conv.c),
 * with in_c == out_c. */
#include "ta_kernels.h"

static int check_pool(const int8_t *out, const int8_t *inp, const ta_geom_t *g,
                      int32_t k_max, int32_t act_min, int32_t act_max) {
    int status;
    if (out == NULL || inp == NULL || g == NULL) {
        return TA_ERR_NULL;
    }
    status = ta_check_geom(g, k_max);
    if (status != TA_OK) {
        return status;
    }
    if (g->in_c != g->out_c) {
        return TA_ERR_DIM;
    }
    if (act_min < -128 || act_min > 127 || act_max < -128 || act_max > 127) {
        return TA_ERR_RANGE;
    }
    if (act_min > act_max) {
        return TA_ERR_ACT;
    }
    return TA_OK;
}

/* mode 0: average, 1: maximum */
static int pool(int8_t *out, const int8_t *inp, const ta_geom_t *g,
                int32_t act_min, int32_t act_max, int mode) {
    int32_t b, oy, ox, c, ky, kx;
    size_t row_len = (size_t)g->in_w * (size_t)g->in_c;
    for (b = 0; b < g->batch; b++) {
        const int8_t *img = inp + (size_t)b * (size_t)g->in_h * row_len;
        for (oy = 0; oy < g->out_h; oy++) {
            int32_t iy0 = oy * g->stride_h - g->pad_top;
            int32_t ky0, ky1;
            ta_window(iy0, g->k_h, g->in_h, &ky0, &ky1);
            for (ox = 0; ox < g->out_w; ox++) {
                int32_t ix0 = ox * g->stride_w - g->pad_left;
                int32_t kx0, kx1;
                /* >= 1 by the geometry check; <= 4096 * 4096 for averages */
                uint32_t count;
                int8_t *y = out + (((size_t)b * (size_t)g->out_h + (size_t)oy) *
                                       (size_t)g->out_w + (size_t)ox) *
                                      (size_t)g->out_c;
                ta_window(ix0, g->k_w, g->in_w, &kx0, &kx1);
                count = (uint32_t)(ky1 - ky0) * (uint32_t)(kx1 - kx0);
                for (c = 0; c < g->in_c; c++) {
                    int32_t acc = mode ? -128 : 0;
                    int32_t v;
                    for (ky = ky0; ky < ky1; ky++) {
                        const int8_t *x = img + (size_t)(iy0 + ky) * row_len +
                                          (size_t)c;
                        for (kx = kx0; kx < kx1; kx++) {
                            int32_t xv = x[(size_t)(ix0 + kx) * (size_t)g->in_c];
                            if (mode) {
                                acc = xv > acc ? xv : acc;
                            } else {
                                acc += xv; /* |acc| <= 2^31: exact */
                            }
                        }
                    }
                    if (mode) {
                        v = acc;
                    } else {
                        /* TFLite: (acc +- count/2) / count, toward zero; done on
                         * the magnitude since acc - count/2 can pass INT32_MIN */
                        uint32_t mag = acc < 0 ? 0u - (uint32_t)acc : (uint32_t)acc;
                        int32_t q = (int32_t)((mag + count / 2u) / count);
                        v = acc > 0 ? q : -q;
                    }
                    y[c] = (int8_t)ta_saturate(v, act_min, act_max);
                }
            }
        }
    }
    return TA_OK;
}

int ta_avg_pool(int8_t *out, const int8_t *inp, const ta_geom_t *g,
                int32_t act_min, int32_t act_max) {
    int status = check_pool(out, inp, g, TA_AVG_POOL_K_MAX, act_min, act_max);
    return status != TA_OK ? status : pool(out, inp, g, act_min, act_max, 0);
}

int ta_max_pool(int8_t *out, const int8_t *inp, const ta_geom_t *g,
                int32_t act_min, int32_t act_max) {
    int status = check_pool(out, inp, g, TA_DIM_MAX, act_min, act_max);
    return status != TA_OK ? status : pool(out, inp, g, act_min, act_max, 1);
}
