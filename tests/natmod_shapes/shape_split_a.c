/*
 * Linker shape: one module over two objects (with shape_split_b.c).
 *
 * This object holds mpy_init and `shared_base` (initialised .data); the other holds
 * `shared_total` (bss) and the accumulation. Each calls into the other
 * (R_X86_64_PLT32 across objects) and both use both globals through the GOT.
 * split_weak is weak in b and strong here: every call, b's own included, must reach
 * this one. Both objects have a static local_twist and local_name of their own.
 */
#include "py/dynruntime.h"

#include "shape_split.h"

mp_int_t shared_base = 1000;

__attribute__((noinline)) static split_int_t local_twist(split_int_t x) {
    return x + 7;
}
static const char local_name[] = "aA";

split_int_t split_weak(void) {
    return 2;
}

/* called from shape_split_b.c */
mp_int_t split_scale(mp_int_t x) {
    return x * 3 + shared_base;
}

static mp_obj_t accumulate(mp_obj_t x_in) {
    return mp_obj_new_int(split_accumulate(mp_obj_get_int(x_in)));
}
static MP_DEFINE_CONST_FUN_OBJ_1(accumulate_obj, accumulate);

static mp_obj_t set_base(mp_obj_t b_in) {
    shared_base = mp_obj_get_int(b_in);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(set_base_obj, set_base);

static mp_obj_t total(void) {
    return mp_obj_new_int(shared_total);
}
static MP_DEFINE_CONST_FUN_OBJ_0(total_obj, total);

static mp_obj_t tag(void) {
    size_t n = 0;
    while (split_tag[n]) {
        n++;
    }
    return mp_obj_new_str(split_tag, n);
}
static MP_DEFINE_CONST_FUN_OBJ_0(tag_obj, tag);

/* (weak winner seen from b, local_twist via a, local_twist via b) */
static mp_obj_t probe(mp_obj_t x_in) {
    split_int_t x = mp_obj_get_int(x_in);
    mp_obj_t items[3] = {
        mp_obj_new_int(split_call_weak()),
        mp_obj_new_int(local_twist(x) * 10 + local_name[x & 1]),
        mp_obj_new_int(split_local_b(x)),
    };
    return mp_obj_new_tuple(3, items);
}
static MP_DEFINE_CONST_FUN_OBJ_1(probe_obj, probe);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_accumulate, MP_OBJ_FROM_PTR(&accumulate_obj));
    mp_store_global(MP_QSTR_set_base, MP_OBJ_FROM_PTR(&set_base_obj));
    mp_store_global(MP_QSTR_total, MP_OBJ_FROM_PTR(&total_obj));
    mp_store_global(MP_QSTR_tag, MP_OBJ_FROM_PTR(&tag_obj));
    mp_store_global(MP_QSTR_probe, MP_OBJ_FROM_PTR(&probe_obj));
    MP_DYNRUNTIME_INIT_EXIT
}
