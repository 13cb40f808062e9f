/*
 * Linker shape: writable initialised data (.data and .data.rel.local).
 *
 * `table` has initial values that calls modify; `cursor` is a writable pointer
 * initialised to &table[2] (an R_X86_64_64 with an addend, inside data); `label`
 * is a writable pointer to a string literal; `calls` is a static int in .data,
 * reached PC-relatively, which is fine because data travels with the text.
 * `bss_ptr` (writable) and `bss_slots` (const) hold addresses of a bss array, so
 * their load-time relocations must add the bss base, not the text base.
 */
#include "py/dynruntime.h"

mp_int_t table[8] = {3, 1, 4, 1, 5, 9, 2, 6};
mp_int_t *cursor = &table[2];
const char *label = "initial label";
static mp_int_t calls = 100;
mp_int_t scratch_bss[4];
mp_int_t *bss_ptr = &scratch_bss[1];
mp_int_t *const bss_slots[2] = {&scratch_bss[0], &scratch_bss[3]};

static size_t c_strlen(const char *s) {
    size_t n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}

static mp_obj_t get(mp_obj_t i_in) {
    calls++;
    return mp_obj_new_int(table[mp_obj_get_int(i_in) & 7]);
}
static MP_DEFINE_CONST_FUN_OBJ_1(get_obj, get);

static mp_obj_t set(mp_obj_t i_in, mp_obj_t v_in) {
    calls++;
    table[mp_obj_get_int(i_in) & 7] = mp_obj_get_int(v_in);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(set_obj, set);

static mp_obj_t total(void) {
    calls++;
    mp_int_t s = 0;
    for (int i = 0; i < 8; i++) {
        s += table[i] * (i + 1);
    }
    return mp_obj_new_int(s);
}
static MP_DEFINE_CONST_FUN_OBJ_0(total_obj, total);

static mp_obj_t deref_cursor(void) {
    calls++;
    return mp_obj_new_int(*cursor);
}
static MP_DEFINE_CONST_FUN_OBJ_0(deref_cursor_obj, deref_cursor);

static mp_obj_t advance_cursor(void) {
    calls++;
    cursor = &table[(cursor - table + 1) & 7];
    return mp_obj_new_int(cursor - table);
}
static MP_DEFINE_CONST_FUN_OBJ_0(advance_cursor_obj, advance_cursor);

static mp_obj_t get_label(void) {
    calls++;
    return mp_obj_new_str(label, c_strlen(label));
}
static MP_DEFINE_CONST_FUN_OBJ_0(get_label_obj, get_label);

static mp_obj_t swap_label(void) {
    calls++;
    label = (label[0] == 'i') ? "swapped label" : "initial label";
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(swap_label_obj, swap_label);

static mp_obj_t n_calls(void) {
    return mp_obj_new_int(calls);
}
static MP_DEFINE_CONST_FUN_OBJ_0(n_calls_obj, n_calls);

/* writes through the load-time-relocated pointers, reads through the GOT */
static mp_obj_t poke_bss(mp_obj_t a_in, mp_obj_t b_in) {
    *bss_ptr += mp_obj_get_int(a_in);
    *bss_slots[0] += mp_obj_get_int(b_in);
    *bss_slots[1] -= mp_obj_get_int(b_in);
    mp_obj_t items[4];
    for (int i = 0; i < 4; i++) {
        items[i] = mp_obj_new_int(scratch_bss[i]);
    }
    return mp_obj_new_tuple(4, items);
}
static MP_DEFINE_CONST_FUN_OBJ_2(poke_bss_obj, poke_bss);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_get, MP_OBJ_FROM_PTR(&get_obj));
    mp_store_global(MP_QSTR_set, MP_OBJ_FROM_PTR(&set_obj));
    mp_store_global(MP_QSTR_total, MP_OBJ_FROM_PTR(&total_obj));
    mp_store_global(MP_QSTR_deref_cursor, MP_OBJ_FROM_PTR(&deref_cursor_obj));
    mp_store_global(MP_QSTR_advance_cursor, MP_OBJ_FROM_PTR(&advance_cursor_obj));
    mp_store_global(MP_QSTR_get_label, MP_OBJ_FROM_PTR(&get_label_obj));
    mp_store_global(MP_QSTR_swap_label, MP_OBJ_FROM_PTR(&swap_label_obj));
    mp_store_global(MP_QSTR_n_calls, MP_OBJ_FROM_PTR(&n_calls_obj));
    mp_store_global(MP_QSTR_poke_bss, MP_OBJ_FROM_PTR(&poke_bss_obj));
    MP_DYNRUNTIME_INIT_EXIT
}
