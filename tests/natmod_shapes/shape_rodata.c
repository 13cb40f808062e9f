/*
 * Linker shape: constant data that holds addresses.
 *
 * `ops` is a const table of {string, function} pairs: gcc puts it in
 * .data.rel.ro(.local) with R_X86_64_64 relocations, which the linker must turn into
 * load-time relocations. `words` is a non-static const table of string pointers,
 * reached through the GOT. `sw` is a switch dense and varied enough for gcc to emit
 * a jump table (PC-relative entries in .rodata). String literals land in
 * .rodata.str*.
 */
#include "py/dynruntime.h"

static mp_int_t f_add(mp_int_t a, mp_int_t b) { return a + b; }
static mp_int_t f_sub(mp_int_t a, mp_int_t b) { return a - b; }
static mp_int_t f_mul(mp_int_t a, mp_int_t b) { return a * b; }
static mp_int_t f_xor(mp_int_t a, mp_int_t b) { return a ^ b; }
static mp_int_t f_max(mp_int_t a, mp_int_t b) { return a > b ? a : b; }

typedef struct {
    const char *name;
    mp_int_t (*fn)(mp_int_t, mp_int_t);
} op_t;

static const op_t ops[] = {
    {"add", f_add},
    {"subtract", f_sub},
    {"multiply", f_mul},
    {"xor", f_xor},
    {"maximum", f_max},
};
#define N_OPS ((mp_int_t)(sizeof(ops) / sizeof(ops[0])))

const char *const words[] = {"zero", "one", "two", "three", "four", "five", "six"};

static size_t c_strlen(const char *s) {
    size_t n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}

static mp_obj_t str_of(const char *s) {
    return mp_obj_new_str(s, c_strlen(s));
}

__attribute__((noinline)) static mp_int_t sw(mp_int_t k, mp_int_t x) {
    switch (k) {
        case 0: return x + 17;
        case 1: return x * 3;
        case 2: return x - 100;
        case 3: return x << 2;
        case 4: return x ^ 0x55;
        case 5: return x * 7 + 1;
        case 6: return x & 0xF0;
        case 7: return -x;
        case 8: return x * x;
        case 9: return x | 0x100;
        case 10: return x + 1000000;
        case 11: return x - 12345;
        case 12: return (x << 4) - x;
        case 13: return ~x;
        default: return -1;
    }
}

static mp_obj_t op(mp_obj_t i_in, mp_obj_t a_in, mp_obj_t b_in) {
    mp_int_t i = mp_obj_get_int(i_in);
    if (i < 0 || i >= N_OPS) {
        mp_raise_ValueError(MP_ERROR_TEXT("no such op"));
    }
    return mp_obj_new_int(ops[i].fn(mp_obj_get_int(a_in), mp_obj_get_int(b_in)));
}
static MP_DEFINE_CONST_FUN_OBJ_3(op_obj, op);

static mp_obj_t op_name(mp_obj_t i_in) {
    mp_int_t i = mp_obj_get_int(i_in);
    if (i < 0 || i >= N_OPS) {
        mp_raise_ValueError(MP_ERROR_TEXT("no such op"));
    }
    return str_of(ops[i].name);
}
static MP_DEFINE_CONST_FUN_OBJ_1(op_name_obj, op_name);

static mp_obj_t word(mp_obj_t i_in) {
    mp_int_t i = mp_obj_get_int(i_in);
    if (i < 0 || i >= (mp_int_t)(sizeof(words) / sizeof(words[0]))) {
        return str_of("out of range");
    }
    return str_of(words[i]);
}
static MP_DEFINE_CONST_FUN_OBJ_1(word_obj, word);

static mp_obj_t sw_py(mp_obj_t k_in, mp_obj_t x_in) {
    return mp_obj_new_int(sw(mp_obj_get_int(k_in), mp_obj_get_int(x_in)));
}
static MP_DEFINE_CONST_FUN_OBJ_2(sw_obj, sw_py);

static mp_obj_t greeting(void) {
    return str_of("greetings from .rodata.str");
}
static MP_DEFINE_CONST_FUN_OBJ_0(greeting_obj, greeting);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_op, MP_OBJ_FROM_PTR(&op_obj));
    mp_store_global(MP_QSTR_op_name, MP_OBJ_FROM_PTR(&op_name_obj));
    mp_store_global(MP_QSTR_word, MP_OBJ_FROM_PTR(&word_obj));
    mp_store_global(MP_QSTR_sw, MP_OBJ_FROM_PTR(&sw_obj));
    mp_store_global(MP_QSTR_greeting, MP_OBJ_FROM_PTR(&greeting_obj));
    mp_store_global(MP_QSTR_n_ops, mp_obj_new_int(N_OPS));
    MP_DYNRUNTIME_INIT_EXIT
}
