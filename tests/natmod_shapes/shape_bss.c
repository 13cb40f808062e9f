/*
 * Linker shape: zero-initialised, non-static globals (.bss, reached through the GOT).
 *
 * The loader allocates bss zeroed; every global here must start at zero and keep
 * its value between calls. Several objects of different sizes and alignments sit in
 * bss together so that an overlap or a short bss would show up as corrupted state.
 */
#include "py/dynruntime.h"

#define N_HIST 256

mp_int_t counter;
char flag;
uint64_t wide;
mp_int_t hist[N_HIST];
uint8_t bytes_seen[33];
mp_int_t *last_slot;

static mp_obj_t bump(mp_obj_t n_in) {
    mp_int_t n = mp_obj_get_int(n_in);
    counter += n;
    mp_int_t slot = counter & (N_HIST - 1);
    hist[slot] += 1;
    last_slot = &hist[slot];
    bytes_seen[(uint32_t)n % sizeof(bytes_seen)] += 1;
    flag = 1;
    wide = wide * 6364136223846793005ULL + (uint64_t)n;
    return mp_obj_new_int(counter);
}
static MP_DEFINE_CONST_FUN_OBJ_1(bump_obj, bump);

/* (counter, flag, wide as two 32-bit halves, sum(hist), sum(bytes_seen), *last_slot) */
static mp_obj_t state(void) {
    mp_int_t h = 0, b = 0;
    for (int i = 0; i < N_HIST; i++) {
        h += hist[i];
    }
    for (size_t i = 0; i < sizeof(bytes_seen); i++) {
        b += bytes_seen[i];
    }
    mp_obj_t items[7] = {
        mp_obj_new_int(counter),
        mp_obj_new_int(flag),
        mp_obj_new_int_from_uint((mp_uint_t)(wide >> 32)),
        mp_obj_new_int_from_uint((mp_uint_t)(wide & 0xFFFFFFFFu)),
        mp_obj_new_int(h),
        mp_obj_new_int(b),
        mp_obj_new_int(last_slot ? *last_slot : -1),
    };
    return mp_obj_new_tuple(7, items);
}
static MP_DEFINE_CONST_FUN_OBJ_0(state_obj, state);

static mp_obj_t hist_at(mp_obj_t i_in) {
    return mp_obj_new_int(hist[mp_obj_get_int(i_in) & (N_HIST - 1)]);
}
static MP_DEFINE_CONST_FUN_OBJ_1(hist_at_obj, hist_at);

/* Every bss byte, summed: zero on a fresh load. */
static mp_obj_t nonzero_bytes(void) {
    mp_int_t n = counter != 0;
    n += flag != 0;
    n += wide != 0;
    n += last_slot != 0;
    for (int i = 0; i < N_HIST; i++) {
        n += hist[i] != 0;
    }
    for (size_t i = 0; i < sizeof(bytes_seen); i++) {
        n += bytes_seen[i] != 0;
    }
    return mp_obj_new_int(n);
}
static MP_DEFINE_CONST_FUN_OBJ_0(nonzero_bytes_obj, nonzero_bytes);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_bump, MP_OBJ_FROM_PTR(&bump_obj));
    mp_store_global(MP_QSTR_state, MP_OBJ_FROM_PTR(&state_obj));
    mp_store_global(MP_QSTR_hist_at, MP_OBJ_FROM_PTR(&hist_at_obj));
    mp_store_global(MP_QSTR_nonzero_bytes, MP_OBJ_FROM_PTR(&nonzero_bytes_obj));
    MP_DYNRUNTIME_INIT_EXIT
}
