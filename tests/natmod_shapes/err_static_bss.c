/*
 * Error shape: a file-local zero-initialised variable. gcc puts it in .bss and
 * reaches it PC-relatively; bss is a separate allocation in a native module, so the
 * link must refuse it (and say which variable).
 */
#include "py/dynruntime.h"

static mp_int_t hidden_counter;

static mp_obj_t bump(void) {
    return mp_obj_new_int(++hidden_counter);
}
static MP_DEFINE_CONST_FUN_OBJ_0(bump_obj, bump);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_bump, MP_OBJ_FROM_PTR(&bump_obj));
    MP_DYNRUNTIME_INIT_EXIT
}
