/*
 * Linker shape: the module's qstr table (used by the command-line test).
 *
 * Names that MicroPython already has as static qstrs (append, count, keys) are
 * numbers in the config header; the others come from the module's own qstr table,
 * which the loader fills in from the .mpy. Both kinds are also stored as values.
 */
#include "py/dynruntime.h"

static mp_obj_t twice(mp_obj_t x) {
    return mp_obj_new_int(2 * mp_obj_get_int(x));
}
static MP_DEFINE_CONST_FUN_OBJ_1(twice_obj, twice);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_append, MP_OBJ_FROM_PTR(&twice_obj));
    mp_store_global(MP_QSTR_twice_with_a_rather_long_name_0123456789, MP_OBJ_FROM_PTR(&twice_obj));
    mp_store_global(MP_QSTR_count, MP_OBJ_NEW_QSTR(MP_QSTR_keys));
    mp_store_global(MP_QSTR_own_qstr_value, MP_OBJ_NEW_QSTR(MP_QSTR_hello_from_the_qstr_table));
    mp_store_global(MP_QSTR_n, mp_obj_new_int(42));
    MP_DYNRUNTIME_INIT_EXIT
}
