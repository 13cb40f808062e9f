/*
 * Linker shape: calls to memset and memcpy that gcc emits on its own.
 *
 * Built at -O2: gcc copies a large struct with memcpy and clears a large local
 * array with memset (at -Os it would use rep movs/stos instead). A native module has
 * no C library: natmod/ta_libc.c must be linked in to provide them; without it the
 * link must fail and name the missing function.
 */
#include "py/dynruntime.h"

#define N_WORDS 4096 /* 16 KB: above gcc's inline-copy threshold at -O2 */

typedef struct {
    uint32_t w[N_WORDS];
} block_t;

block_t src_block;
block_t dst_block;

/* src_block.w[i] = i * mul + add (mod 2^32) */
static mp_obj_t fill_src(mp_obj_t mul_in, mp_obj_t add_in) {
    uint32_t mul = (uint32_t)mp_obj_get_int_truncated(mul_in);
    uint32_t add = (uint32_t)mp_obj_get_int_truncated(add_in);
    for (uint32_t i = 0; i < N_WORDS; i++) {
        src_block.w[i] = i * mul + add;
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(fill_src_obj, fill_src);

__attribute__((noinline)) static void copy_block(block_t *dst, const block_t *src) {
    *dst = *src; /* memcpy */
}

/* copy src to dst, then sum(dst.w[i] * (i + 1)) mod 2^32 */
static mp_obj_t copy_and_sum(void) {
    copy_block(&dst_block, &src_block);
    uint32_t s = 0;
    for (uint32_t i = 0; i < N_WORDS; i++) {
        s += dst_block.w[i] * (i + 1);
    }
    return mp_obj_new_int_from_uint(s);
}
static MP_DEFINE_CONST_FUN_OBJ_0(copy_and_sum_obj, copy_and_sum);

/* a zeroed local array (memset), two entries set, then a weighted sum */
__attribute__((noinline)) static uint32_t scratch_sum(uint32_t k, uint32_t v) {
    uint32_t scratch[N_WORDS] = {0}; /* memset */
    scratch[k % N_WORDS] = v;
    scratch[(k * 7 + 1) % N_WORDS] += v ^ 0x5A5A5A5Au;
    uint32_t s = 0;
    for (uint32_t i = 0; i < N_WORDS; i++) {
        s += scratch[i] * (i | 1);
    }
    return s;
}

static mp_obj_t scratch(mp_obj_t k_in, mp_obj_t v_in) {
    return mp_obj_new_int_from_uint(scratch_sum((uint32_t)mp_obj_get_int_truncated(k_in),
                                                (uint32_t)mp_obj_get_int_truncated(v_in)));
}
static MP_DEFINE_CONST_FUN_OBJ_2(scratch_obj, scratch);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_fill_src, MP_OBJ_FROM_PTR(&fill_src_obj));
    mp_store_global(MP_QSTR_copy_and_sum, MP_OBJ_FROM_PTR(&copy_and_sum_obj));
    mp_store_global(MP_QSTR_scratch, MP_OBJ_FROM_PTR(&scratch_obj));
    mp_store_global(MP_QSTR_n_words, mp_obj_new_int(N_WORDS));
    MP_DYNRUNTIME_INIT_EXIT
}
