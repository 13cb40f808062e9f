/*
 * The MicroPython face of the kernels: module `_tinyadapt`.
 *
 * This is the only file that includes py/dynruntime.h. Every function checks its
 * arguments in the order docs/kernels.md gives and raises the same exception text as
 * host_sim/_tinyadapt, before any kernel touches memory. Nothing here allocates
 * except the exception objects themselves.
 */
#include "py/dynruntime.h"

#include "ta_fixedpoint.h"
#include "ta_kernels.h"

enum { ET_I8, ET_I32, ET_U32 };

#define I8_LO (-128)
#define I8_HI 127
#define I32_LO (-2147483647 - 1)
#define I32_HI 2147483647
#define DIM_MAX 65535

/* ---- error messages with numbers, built without printf ---- */

typedef struct {
    char s[120];
    size_t n;
} msg_t;

static void msg_str(msg_t *m, const char *s) {
    while (*s && m->n < sizeof(m->s) - 1) {
        m->s[m->n++] = *s++;
    }
}

static void msg_int(msg_t *m, mp_int_t v) {
    char tmp[24];
    size_t k = 0;
    mp_uint_t u = v < 0 ? (mp_uint_t)0 - (mp_uint_t)v : (mp_uint_t)v;
    do {
        tmp[k++] = (char)('0' + (int)(u % 10u));
        u /= 10u;
    } while (u && k < sizeof(tmp));
    if (v < 0) {
        msg_str(m, "-");
    }
    while (k && m->n < sizeof(m->s) - 1) {
        m->s[m->n++] = tmp[--k];
    }
}

static MP_NORETURN void raise_msg_obj(const mp_obj_type_t *type, msg_t *m) {
    /* the exception keeps its own copy: m lives on this C stack */
    mp_obj_t arg = mp_obj_new_str(m->s, m->n);
    nlr_raise(mp_call_function_n_kw(MP_OBJ_FROM_PTR(type), 1, 0, &arg));
}

static MP_NORETURN void raise2(const mp_obj_type_t *type, const char *a, const char *b) {
    msg_t m;
    m.n = 0;
    msg_str(&m, a);
    msg_str(&m, b);
    raise_msg_obj(type, &m);
}

/* "<name>: size <n> bytes, expected <tail><k>" */
static MP_NORETURN void raise_size(const char *name, size_t n, const char *tail, size_t k) {
    msg_t m;
    m.n = 0;
    msg_str(&m, name);
    msg_str(&m, ": size ");
    msg_int(&m, (mp_int_t)n);
    msg_str(&m, " bytes, expected ");
    msg_str(&m, tail);
    msg_int(&m, (mp_int_t)k);
    raise_msg_obj(&mp_type_ValueError, &m);
}

/* ---- arguments ---- */

static void get_buf(mp_obj_t o, const char *name, int et, int writable, mp_buffer_info_t *bi) {
    if (!mp_get_buffer(o, bi, MP_BUFFER_READ)) {
        raise2(&mp_type_TypeError, name, ": expected a buffer");
    }
    int tc = bi->typecode;
    int raw = tc == 'b' || tc == 'B' || tc == BYTEARRAY_TYPECODE;
    int ok = raw;
    if (et == ET_I32) {
        ok = raw || tc == 'i' || (tc == 'l' && sizeof(long) == 4);
    } else if (et == ET_U32) {
        ok = raw || tc == 'I' || (tc == 'L' && sizeof(long) == 4);
    }
    if (!ok) {
        raise2(&mp_type_TypeError, name,
            et == ET_I8 ? ": expected int8 buffer" : et == ET_I32 ? ": expected int32 buffer" : ": expected uint32 buffer");
    }
    if (writable && !mp_get_buffer(o, bi, MP_BUFFER_WRITE)) {
        raise2(&mp_type_TypeError, name, ": buffer is read-only");
    }
    if (et != ET_I8 && (bi->len & 3u)) {
        msg_t m;
        m.n = 0;
        msg_str(&m, name);
        msg_str(&m, ": size ");
        msg_int(&m, (mp_int_t)bi->len);
        msg_str(&m, " bytes is not a multiple of 4");
        raise_msg_obj(&mp_type_ValueError, &m);
    }
}

/* An int in [lo, hi]. mp_obj_get_int truncates big ints silently, so a value that
 * is not a small int is converted back and compared with the original. */
static mp_int_t get_int(mp_obj_t o, const char *name, mp_int_t lo, mp_int_t hi) {
    mp_int_t v = mp_obj_get_int(o);
    if (!mp_obj_is_small_int(o) && mp_obj_is_int(o)) {
        if (mp_binary_op(MP_BINARY_OP_EQUAL, mp_obj_new_int(v), o) != mp_const_true) {
            raise2(&mp_type_ValueError, name, " out of range");
        }
    }
    if (v < lo || v > hi) {
        raise2(&mp_type_ValueError, name, " out of range");
    }
    return v;
}

/* uint32 seeds: full 32-bit range, which is a big int on 32-bit ports */
static uint32_t get_u32(mp_obj_t o, const char *name, uint32_t lo) {
    mp_obj_t zero = mp_obj_new_int(0);
    mp_obj_t top = mp_obj_new_int_from_uint(0xFFFFFFFFu);
    mp_obj_get_int(o); /* TypeError for non-ints */
    if (mp_binary_op(MP_BINARY_OP_LESS, o, zero) == mp_const_true
        || mp_binary_op(MP_BINARY_OP_MORE, o, top) == mp_const_true) {
        raise2(&mp_type_ValueError, name, " out of range");
    }
    uint32_t v = (uint32_t)mp_obj_get_int_truncated(o);
    if (v < lo) {
        raise2(&mp_type_ValueError, name, " out of range");
    }
    return v;
}

static void check_act(mp_int_t act_min, mp_int_t act_max) {
    if (act_min > act_max) {
        mp_raise_ValueError(MP_ERROR_TEXT("act_min > act_max"));
    }
}

static void check_size(mp_buffer_info_t *bi, const char *name, size_t expected) {
    if (bi->len != expected) {
        raise_size(name, bi->len, "", expected);
    }
}

static void check_multiple(mp_buffer_info_t *bi, const char *name, size_t unit, int nonzero) {
    if (bi->len % unit || (nonzero && bi->len == 0)) {
        raise_size(name, bi->len, nonzero ? "a nonzero multiple of " : "a multiple of ", unit);
    }
}

/* Kernel status after the binding's own checks: only element checks remain. */
static void check_status(int status) {
    if (status == TA_OK) {
        return;
    }
    if (status == TA_ERR_SHIFT) {
        mp_raise_ValueError(MP_ERROR_TEXT("shift out of range"));
    }
    if (status == TA_ERR_MULT) {
        mp_raise_ValueError(MP_ERROR_TEXT("mult out of range"));
    }
    mp_raise_ValueError(MP_ERROR_TEXT("invalid kernel argument"));
}

/* ---- kernels ---- */

static mp_obj_t fully_connected(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t out, inp, w, bias, mult, shift;
    get_buf(args[0], "out", ET_I8, 1, &out);
    get_buf(args[1], "inp", ET_I8, 0, &inp);
    get_buf(args[2], "weights", ET_I8, 0, &w);
    get_buf(args[3], "bias", ET_I32, 0, &bias);
    get_buf(args[4], "mult", ET_I32, 0, &mult);
    get_buf(args[5], "shift", ET_I32, 0, &shift);
    mp_int_t n_in = get_int(args[6], "n_in", 1, DIM_MAX);
    mp_int_t n_out = get_int(args[7], "n_out", 1, DIM_MAX);
    mp_int_t in_zp = get_int(args[8], "in_zp", I8_LO, I8_HI);
    mp_int_t out_zp = get_int(args[9], "out_zp", I8_LO, I8_HI);
    mp_int_t act_min = get_int(args[10], "act_min", I8_LO, I8_HI);
    mp_int_t act_max = get_int(args[11], "act_max", I8_LO, I8_HI);
    check_act(act_min, act_max);
    check_size(&w, "weights", (size_t)n_out * (size_t)n_in);
    check_size(&bias, "bias", 4u * (size_t)n_out);
    check_size(&mult, "mult", 4u * (size_t)n_out);
    check_size(&shift, "shift", 4u * (size_t)n_out);
    check_multiple(&inp, "inp", (size_t)n_in, 1);
    size_t n_batch = inp.len / (size_t)n_in;
    check_size(&out, "out", n_batch * (size_t)n_out);
    if (n_batch > 0x7fffffff) {
        mp_raise_ValueError(MP_ERROR_TEXT("inp too large"));
    }
    check_status(ta_fully_connected(out.buf, inp.buf, w.buf, bias.buf, mult.buf, shift.buf,
        (int32_t)n_batch, (int32_t)n_in, (int32_t)n_out, (int32_t)in_zp, (int32_t)out_zp,
        (int32_t)act_min, (int32_t)act_max));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(fully_connected_obj, 12, 12, fully_connected);

static mp_obj_t requantize(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t out, inp, mult, shift;
    get_buf(args[0], "out", ET_I8, 1, &out);
    get_buf(args[1], "inp", ET_I32, 0, &inp);
    get_buf(args[2], "mult", ET_I32, 0, &mult);
    get_buf(args[3], "shift", ET_I32, 0, &shift);
    mp_int_t out_zp = get_int(args[4], "out_zp", I8_LO, I8_HI);
    mp_int_t act_min = get_int(args[5], "act_min", I8_LO, I8_HI);
    mp_int_t act_max = get_int(args[6], "act_max", I8_LO, I8_HI);
    check_act(act_min, act_max);
    check_multiple(&mult, "mult", 4, 1);
    size_t n_ch = mult.len / 4u;
    check_size(&shift, "shift", mult.len);
    check_multiple(&inp, "inp", 4u * n_ch, 0);
    size_t count = inp.len / (4u * n_ch);
    check_size(&out, "out", count * n_ch);
    if (count * n_ch > 0x7fffffff || n_ch > 0x7fffffff) {
        mp_raise_ValueError(MP_ERROR_TEXT("inp too large"));
    }
    /* an empty bytearray may have no storage: give the kernel a valid pointer */
    int8_t empty_out[1];
    uint8_t empty_inp[4] = {0, 0, 0, 0};
    check_status(ta_requantize(out.len ? out.buf : empty_out, inp.len ? inp.buf : empty_inp,
        mult.buf, shift.buf, (int32_t)(count * n_ch), (int32_t)n_ch,
        (int32_t)out_zp, (int32_t)act_min, (int32_t)act_max));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(requantize_obj, 7, 7, requantize);

static mp_obj_t rounding_rshift(mp_obj_t x_in, mp_obj_t n_in) {
    mp_int_t x = get_int(x_in, "x", I32_LO, I32_HI);
    mp_int_t n = get_int(n_in, "n", 0, 31);
    return mp_obj_new_int(ta_rounding_rshift((int32_t)x, (int)n));
}
static MP_DEFINE_CONST_FUN_OBJ_2(rounding_rshift_obj, rounding_rshift);

static mp_obj_t srdhm(mp_obj_t a_in, mp_obj_t b_in) {
    mp_int_t a = get_int(a_in, "a", I32_LO, I32_HI);
    mp_int_t b = get_int(b_in, "b", I32_LO, I32_HI);
    return mp_obj_new_int(ta_srdhm((int32_t)a, (int32_t)b));
}
static MP_DEFINE_CONST_FUN_OBJ_2(srdhm_obj, srdhm);

static mp_obj_t mul_by_quantized_mult(mp_obj_t x_in, mp_obj_t m_in, mp_obj_t s_in) {
    mp_int_t x = get_int(x_in, "x", I32_LO, I32_HI);
    mp_int_t m = get_int(m_in, "mult", 0, I32_HI);
    mp_int_t s = get_int(s_in, "shift", -31, 30);
    return mp_obj_new_int(ta_mul_by_quantized_mult((int32_t)x, (int32_t)m, (int)s));
}
static MP_DEFINE_CONST_FUN_OBJ_3(mul_by_quantized_mult_obj, mul_by_quantized_mult);

static mp_obj_t saturate(mp_obj_t x_in, mp_obj_t lo_in, mp_obj_t hi_in) {
    mp_int_t x = get_int(x_in, "x", I32_LO, I32_HI);
    mp_int_t lo = get_int(lo_in, "lo", I32_LO, I32_HI);
    mp_int_t hi = get_int(hi_in, "hi", I32_LO, I32_HI);
    if (lo > hi) {
        mp_raise_ValueError(MP_ERROR_TEXT("lo > hi"));
    }
    return mp_obj_new_int(ta_saturate((int32_t)x, (int32_t)lo, (int32_t)hi));
}
static MP_DEFINE_CONST_FUN_OBJ_3(saturate_obj, saturate);

static mp_obj_t xorshift32_fill(mp_obj_t out_in, mp_obj_t seed_in) {
    mp_buffer_info_t out;
    get_buf(out_in, "out", ET_U32, 1, &out);
    uint32_t seed = get_u32(seed_in, "seed", 1);
    uint32_t state = ta_xorshift32_fill(out.buf, out.len / 4u, seed);
    return mp_obj_new_int_from_uint(state);
}
static MP_DEFINE_CONST_FUN_OBJ_2(xorshift32_fill_obj, xorshift32_fill);

static mp_obj_t crc32(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t data;
    get_buf(args[0], "data", ET_I8, 0, &data);
    uint32_t crc = n_args > 1 ? get_u32(args[1], "crc", 0) : 0;
    return mp_obj_new_int_from_uint(ta_crc32(data.buf, data.len, crc));
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(crc32_obj, 1, 2, crc32);

/* ---- int8 inference kernels (ABI 2) ---- */

#define I31_MAX 0x7FFFFFFF

/* Element count a*b*c*d of a tensor (all >= 1), or ValueError("<name> too
 * large") past 2^31 - 1. The division keeps 32-bit ports from wrapping. */
static size_t volume(const char *name, mp_int_t a, mp_int_t b, mp_int_t c, mp_int_t d) {
    mp_int_t f[4] = {a, b, c, d};
    size_t n = 1;
    for (int i = 0; i < 4; i++) {
        if ((size_t)f[i] > (size_t)I31_MAX / n) {
            raise2(&mp_type_ValueError, name, " too large");
        }
        n *= (size_t)f[i];
    }
    return n;
}

/* The window scalars k_h, k_w, stride_h, stride_w, pad_top, pad_left, out_h,
 * out_w at a[0..7], in that order, into g (in_h, in_w already set):
 * pad_top in [0, k_h - 1]; out_h in [1, (in_h - 1 + pad_top) / stride_h + 1],
 * so every window overlaps the input; likewise for the width. */
static void get_window(const mp_obj_t *a, ta_geom_t *g, mp_int_t k_max) {
    g->k_h = (int32_t)get_int(a[0], "k_h", 1, k_max);
    g->k_w = (int32_t)get_int(a[1], "k_w", 1, k_max);
    g->stride_h = (int32_t)get_int(a[2], "stride_h", 1, DIM_MAX);
    g->stride_w = (int32_t)get_int(a[3], "stride_w", 1, DIM_MAX);
    g->pad_top = (int32_t)get_int(a[4], "pad_top", 0, g->k_h - 1);
    g->pad_left = (int32_t)get_int(a[5], "pad_left", 0, g->k_w - 1);
    g->out_h = (int32_t)get_int(a[6], "out_h", 1, (g->in_h - 1 + g->pad_top) / g->stride_h + 1);
    g->out_w = (int32_t)get_int(a[7], "out_w", 1, (g->in_w - 1 + g->pad_left) / g->stride_w + 1);
}

/* inp: a nonzero multiple of one image (in_vol bytes); sets g->batch; then
 * out must hold batch images of out_vol bytes. */
static void get_batch(mp_buffer_info_t *inp, mp_buffer_info_t *out, ta_geom_t *g,
                      size_t in_vol, size_t out_vol) {
    check_multiple(inp, "inp", in_vol, 1);
    if (inp->len > (size_t)I31_MAX) {
        mp_raise_ValueError(MP_ERROR_TEXT("inp too large"));
    }
    size_t batch = inp->len / in_vol;
    if (out_vol > (size_t)I31_MAX / batch) {
        mp_raise_ValueError(MP_ERROR_TEXT("out too large"));
    }
    check_size(out, "out", batch * out_vol);
    g->batch = (int32_t)batch;
}

/* conv2d and depthwise_conv2d share their arguments except the fourth
 * dimension: out_c for conv2d, depth_multiplier for depthwise_conv2d. */
static mp_obj_t conv_common(const mp_obj_t *args, int depthwise) {
    mp_buffer_info_t out, inp, w, bias, mult, shift;
    ta_geom_t g;
    get_buf(args[0], "out", ET_I8, 1, &out);
    get_buf(args[1], "inp", ET_I8, 0, &inp);
    get_buf(args[2], "weights", ET_I8, 0, &w);
    get_buf(args[3], "bias", ET_I32, 0, &bias);
    get_buf(args[4], "mult", ET_I32, 0, &mult);
    get_buf(args[5], "shift", ET_I32, 0, &shift);
    g.in_h = (int32_t)get_int(args[6], "in_h", 1, DIM_MAX);
    g.in_w = (int32_t)get_int(args[7], "in_w", 1, DIM_MAX);
    g.in_c = (int32_t)get_int(args[8], "in_c", 1, DIM_MAX);
    mp_int_t depth_multiplier = 1;
    if (depthwise) {
        depth_multiplier = get_int(args[9], "depth_multiplier", 1, DIM_MAX / g.in_c);
        g.out_c = (int32_t)(g.in_c * depth_multiplier);
    } else {
        g.out_c = (int32_t)get_int(args[9], "out_c", 1, DIM_MAX);
    }
    get_window(args + 10, &g, DIM_MAX);
    mp_int_t in_zp = get_int(args[18], "in_zp", I8_LO, I8_HI);
    mp_int_t out_zp = get_int(args[19], "out_zp", I8_LO, I8_HI);
    mp_int_t act_min = get_int(args[20], "act_min", I8_LO, I8_HI);
    mp_int_t act_max = get_int(args[21], "act_max", I8_LO, I8_HI);
    check_act(act_min, act_max);
    size_t in_vol = volume("inp", g.in_h, g.in_w, g.in_c, 1);
    size_t w_vol = depthwise ? volume("weights", g.k_h, g.k_w, g.out_c, 1)
                             : volume("weights", g.out_c, g.k_h, g.k_w, g.in_c);
    size_t out_vol = volume("out", g.out_h, g.out_w, g.out_c, 1);
    check_size(&w, "weights", w_vol);
    check_size(&bias, "bias", 4u * (size_t)g.out_c);
    check_size(&mult, "mult", 4u * (size_t)g.out_c);
    check_size(&shift, "shift", 4u * (size_t)g.out_c);
    get_batch(&inp, &out, &g, in_vol, out_vol);
    if (depthwise) {
        check_status(ta_depthwise_conv2d(out.buf, inp.buf, w.buf, bias.buf, mult.buf,
            shift.buf, &g, (int32_t)depth_multiplier, (int32_t)in_zp, (int32_t)out_zp,
            (int32_t)act_min, (int32_t)act_max));
    } else {
        check_status(ta_conv2d(out.buf, inp.buf, w.buf, bias.buf, mult.buf, shift.buf, &g,
            (int32_t)in_zp, (int32_t)out_zp, (int32_t)act_min, (int32_t)act_max));
    }
    return mp_const_none;
}

static mp_obj_t conv2d(size_t n_args, const mp_obj_t *args) {
    return conv_common(args, 0);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(conv2d_obj, 22, 22, conv2d);

static mp_obj_t depthwise_conv2d(size_t n_args, const mp_obj_t *args) {
    return conv_common(args, 1);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(depthwise_conv2d_obj, 22, 22, depthwise_conv2d);

/* avg_pool and max_pool: (out, inp, in_h, in_w, channels, k_h, k_w, stride_h,
 * stride_w, pad_top, pad_left, out_h, out_w, act_min, act_max) */
static mp_obj_t pool_common(const mp_obj_t *args, int is_max) {
    mp_buffer_info_t out, inp;
    ta_geom_t g;
    get_buf(args[0], "out", ET_I8, 1, &out);
    get_buf(args[1], "inp", ET_I8, 0, &inp);
    g.in_h = (int32_t)get_int(args[2], "in_h", 1, DIM_MAX);
    g.in_w = (int32_t)get_int(args[3], "in_w", 1, DIM_MAX);
    g.in_c = (int32_t)get_int(args[4], "channels", 1, DIM_MAX);
    g.out_c = g.in_c;
    get_window(args + 5, &g, is_max ? DIM_MAX : TA_AVG_POOL_K_MAX);
    mp_int_t act_min = get_int(args[13], "act_min", I8_LO, I8_HI);
    mp_int_t act_max = get_int(args[14], "act_max", I8_LO, I8_HI);
    check_act(act_min, act_max);
    size_t in_vol = volume("inp", g.in_h, g.in_w, g.in_c, 1);
    size_t out_vol = volume("out", g.out_h, g.out_w, g.out_c, 1);
    get_batch(&inp, &out, &g, in_vol, out_vol);
    if (is_max) {
        check_status(ta_max_pool(out.buf, inp.buf, &g, (int32_t)act_min, (int32_t)act_max));
    } else {
        check_status(ta_avg_pool(out.buf, inp.buf, &g, (int32_t)act_min, (int32_t)act_max));
    }
    return mp_const_none;
}

static mp_obj_t avg_pool(size_t n_args, const mp_obj_t *args) {
    return pool_common(args, 0);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(avg_pool_obj, 15, 15, avg_pool);

static mp_obj_t max_pool(size_t n_args, const mp_obj_t *args) {
    return pool_common(args, 1);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(max_pool_obj, 15, 15, max_pool);

/* add(out, in1, in2, in1_zp, in1_mult, in1_shift, in2_zp, in2_mult, in2_shift,
 *     out_zp, out_mult, out_shift, act_min, act_max) */
static mp_obj_t add(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t out, in1, in2;
    ta_add_params_t p;
    get_buf(args[0], "out", ET_I8, 1, &out);
    get_buf(args[1], "in1", ET_I8, 0, &in1);
    get_buf(args[2], "in2", ET_I8, 0, &in2);
    p.in1_zp = (int32_t)get_int(args[3], "in1_zp", I8_LO, I8_HI);
    p.in1_mult = (int32_t)get_int(args[4], "in1_mult", 0, I32_HI);
    p.in1_shift = (int32_t)get_int(args[5], "in1_shift", -31, 0);
    p.in2_zp = (int32_t)get_int(args[6], "in2_zp", I8_LO, I8_HI);
    p.in2_mult = (int32_t)get_int(args[7], "in2_mult", 0, I32_HI);
    p.in2_shift = (int32_t)get_int(args[8], "in2_shift", -31, 0);
    p.out_zp = (int32_t)get_int(args[9], "out_zp", I8_LO, I8_HI);
    p.out_mult = (int32_t)get_int(args[10], "out_mult", 0, I32_HI);
    p.out_shift = (int32_t)get_int(args[11], "out_shift", -31, 0);
    p.act_min = (int32_t)get_int(args[12], "act_min", I8_LO, I8_HI);
    p.act_max = (int32_t)get_int(args[13], "act_max", I8_LO, I8_HI);
    check_act(p.act_min, p.act_max);
    check_size(&in2, "in2", in1.len);
    check_size(&out, "out", in1.len);
    if (in1.len > (size_t)I31_MAX) {
        mp_raise_ValueError(MP_ERROR_TEXT("in1 too large"));
    }
    if (in1.len == 0) {
        return mp_const_none; /* an empty bytearray may have no storage */
    }
    check_status(ta_add(out.buf, in1.buf, in2.buf, (int32_t)in1.len, &p));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(add_obj, 14, 14, add);

/* softmax(out, inp, n, input_multiplier, input_left_shift, diff_min) */
static mp_obj_t softmax(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t out, inp;
    get_buf(args[0], "out", ET_I8, 1, &out);
    get_buf(args[1], "inp", ET_I8, 0, &inp);
    mp_int_t n = get_int(args[2], "n", 1, TA_SOFTMAX_N_MAX);
    mp_int_t input_multiplier = get_int(args[3], "input_multiplier", 0, I32_HI);
    mp_int_t input_left_shift = get_int(args[4], "input_left_shift", 0, 31);
    mp_int_t diff_min = get_int(args[5], "diff_min", I32_LO, 0);
    check_multiple(&inp, "inp", (size_t)n, 1);
    check_size(&out, "out", inp.len);
    if (inp.len > (size_t)I31_MAX) {
        mp_raise_ValueError(MP_ERROR_TEXT("inp too large"));
    }
    check_status(ta_softmax(out.buf, inp.buf, (int32_t)(inp.len / (size_t)n), (int32_t)n,
        (int32_t)input_multiplier, (int32_t)input_left_shift, (int32_t)diff_min));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(softmax_obj, 6, 6, softmax);

/* argmax(out, inp, n): int32 indices, one per row */
static mp_obj_t argmax(mp_obj_t out_in, mp_obj_t inp_in, mp_obj_t n_in) {
    mp_buffer_info_t out, inp;
    get_buf(out_in, "out", ET_I32, 1, &out);
    get_buf(inp_in, "inp", ET_I8, 0, &inp);
    mp_int_t n = get_int(n_in, "n", 1, DIM_MAX);
    check_multiple(&inp, "inp", (size_t)n, 1);
    size_t rows = inp.len / (size_t)n;
    check_size(&out, "out", 4u * rows);
    if (inp.len > (size_t)I31_MAX) {
        mp_raise_ValueError(MP_ERROR_TEXT("inp too large"));
    }
    check_status(ta_argmax(out.buf, inp.buf, (int32_t)rows, (int32_t)n));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(argmax_obj, argmax);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY

    mp_store_global(MP_QSTR_fully_connected, MP_OBJ_FROM_PTR(&fully_connected_obj));
    mp_store_global(MP_QSTR_requantize, MP_OBJ_FROM_PTR(&requantize_obj));
    mp_store_global(MP_QSTR_rounding_rshift, MP_OBJ_FROM_PTR(&rounding_rshift_obj));
    mp_store_global(MP_QSTR_srdhm, MP_OBJ_FROM_PTR(&srdhm_obj));
    mp_store_global(MP_QSTR_mul_by_quantized_mult, MP_OBJ_FROM_PTR(&mul_by_quantized_mult_obj));
    mp_store_global(MP_QSTR_saturate, MP_OBJ_FROM_PTR(&saturate_obj));
    mp_store_global(MP_QSTR_xorshift32_fill, MP_OBJ_FROM_PTR(&xorshift32_fill_obj));
    mp_store_global(MP_QSTR_crc32, MP_OBJ_FROM_PTR(&crc32_obj));
    mp_store_global(MP_QSTR_conv2d, MP_OBJ_FROM_PTR(&conv2d_obj));
    mp_store_global(MP_QSTR_depthwise_conv2d, MP_OBJ_FROM_PTR(&depthwise_conv2d_obj));
    mp_store_global(MP_QSTR_avg_pool, MP_OBJ_FROM_PTR(&avg_pool_obj));
    mp_store_global(MP_QSTR_max_pool, MP_OBJ_FROM_PTR(&max_pool_obj));
    mp_store_global(MP_QSTR_add, MP_OBJ_FROM_PTR(&add_obj));
    mp_store_global(MP_QSTR_softmax, MP_OBJ_FROM_PTR(&softmax_obj));
    mp_store_global(MP_QSTR_argmax, MP_OBJ_FROM_PTR(&argmax_obj));
    mp_store_global(MP_QSTR_ABI, MP_OBJ_NEW_SMALL_INT(2));

    MP_DYNRUNTIME_INIT_EXIT
}
