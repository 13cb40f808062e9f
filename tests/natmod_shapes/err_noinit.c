/* Error shape: a module without mpy_init. */
#include "py/dynruntime.h"

static mp_obj_t f(void) {
    return mp_obj_new_int(1);
}
MP_DEFINE_CONST_FUN_OBJ_0(lonely_f_obj, f);

mp_obj_t not_the_entry(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_f, MP_OBJ_FROM_PTR(&lonely_f_obj));
    MP_DYNRUNTIME_INIT_EXIT
}
