/* Error shape: defines dup_counter, as err_dup_b.c does too. */
#include "py/dynruntime.h"

mp_int_t dup_counter = 1;

static mp_obj_t f(void) {
    return mp_obj_new_int(++dup_counter);
}
static MP_DEFINE_CONST_FUN_OBJ_0(f_obj, f);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_f, MP_OBJ_FROM_PTR(&f_obj));
    MP_DYNRUNTIME_INIT_EXIT
}
