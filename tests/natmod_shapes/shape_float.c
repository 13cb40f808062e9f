/*
 * Linker shape: double arithmetic on x64 (MICROPY_FLOAT_IMPL_DOUBLE).
 *
 * Double constants land in .rodata.cst8 / .rodata (a coefficient table) and are
 * loaded PC-relatively; floats cross the boundary with mp_obj_get_float and
 * mp_obj_new_float. Each function's order of operations is written so that CPython
 * can compute the same IEEE result exactly.
 */
#include "py/dynruntime.h"

static const double coeffs[] = {0.5, -1.25, 3.0e-3, 7.75, -0.1};

/* a * b + c, as two roundings (no contraction under -std=c99) */
static mp_obj_t fmadd(mp_obj_t a, mp_obj_t b, mp_obj_t c) {
    double x = mp_obj_get_float(a) * mp_obj_get_float(b);
    return mp_obj_new_float(x + mp_obj_get_float(c));
}
static MP_DEFINE_CONST_FUN_OBJ_3(fmadd_obj, fmadd);

/* Horner: ((((c0 * x + c1) * x + c2) * x + c3) * x + c4) */
static mp_obj_t poly(mp_obj_t x_in) {
    double x = mp_obj_get_float(x_in);
    double acc = coeffs[0];
    for (size_t i = 1; i < sizeof(coeffs) / sizeof(coeffs[0]); i++) {
        acc = acc * x + coeffs[i];
    }
    return mp_obj_new_float(acc);
}
static MP_DEFINE_CONST_FUN_OBJ_1(poly_obj, poly);

/* x / 3.0 + 0.1, and an int operand converted to double */
static mp_obj_t mixed(mp_obj_t x_in, mp_obj_t n_in) {
    double x = mp_obj_get_float(x_in);
    mp_int_t n = mp_obj_get_int(n_in);
    return mp_obj_new_float(x / 3.0 + 0.1 + (double)n * 0.25);
}
static MP_DEFINE_CONST_FUN_OBJ_2(mixed_obj, mixed);

/* Newton iterations for sqrt(v), fixed count: no libm in a native module */
static mp_obj_t newton_sqrt(mp_obj_t v_in) {
    double v = mp_obj_get_float(v_in);
    double g = v > 1.0 ? v : 1.0;
    for (int i = 0; i < 30; i++) {
        g = 0.5 * (g + v / g);
    }
    return mp_obj_new_float(g);
}
static MP_DEFINE_CONST_FUN_OBJ_1(newton_sqrt_obj, newton_sqrt);

/* truncation toward zero, as C does it */
static mp_obj_t trunc_int(mp_obj_t x_in) {
    return mp_obj_new_int((mp_int_t)mp_obj_get_float(x_in));
}
static MP_DEFINE_CONST_FUN_OBJ_1(trunc_int_obj, trunc_int);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_fmadd, MP_OBJ_FROM_PTR(&fmadd_obj));
    mp_store_global(MP_QSTR_poly, MP_OBJ_FROM_PTR(&poly_obj));
    mp_store_global(MP_QSTR_mixed, MP_OBJ_FROM_PTR(&mixed_obj));
    mp_store_global(MP_QSTR_newton_sqrt, MP_OBJ_FROM_PTR(&newton_sqrt_obj));
    mp_store_global(MP_QSTR_trunc_int, MP_OBJ_FROM_PTR(&trunc_int_obj));
    mp_store_global(MP_QSTR_third, mp_obj_new_float(1.0 / 3.0));
    MP_DYNRUNTIME_INIT_EXIT
}
