/* Error shape: calls a function that no object defines. */
#include "py/dynruntime.h"

extern mp_int_t helper_defined_nowhere(mp_int_t x);

static mp_obj_t f(mp_obj_t x) {
    return mp_obj_new_int(helper_defined_nowhere(mp_obj_get_int(x)));
}
static MP_DEFINE_CONST_FUN_OBJ_1(f_obj, f);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_f, MP_OBJ_FROM_PTR(&f_obj));
    MP_DYNRUNTIME_INIT_EXIT
}
