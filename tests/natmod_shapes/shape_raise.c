/*
 * Linker shape: exceptions raised from C arrive as Python exceptions.
 *
 * mp_raise_ValueError / mp_raise_TypeError take a message in rodata; mp_raise_OSError
 * builds the exception from an errno; the last one carries a message built at run
 * time. After any of them the module must keep working (nlr state intact).
 */
#include "py/dynruntime.h"

mp_int_t n_checked;

static mp_obj_t check(mp_obj_t kind_in, mp_obj_t v_in) {
    mp_int_t kind = mp_obj_get_int(kind_in);
    mp_int_t v = mp_obj_get_int(v_in);
    n_checked++;
    switch (kind) {
        case 0:
            if (v < 0) {
                mp_raise_ValueError(MP_ERROR_TEXT("value must be >= 0"));
            }
            break;
        case 1:
            if (v & 1) {
                mp_raise_TypeError(MP_ERROR_TEXT("odd values are the wrong type"));
            }
            break;
        case 2:
            if (v != 0) {
                mp_raise_OSError((int)v);
            }
            break;
        default: {
            char msg[] = "kind ? is unknown";
            msg[5] = (char)('0' + (kind % 10));
            mp_obj_t arg = mp_obj_new_str(msg, sizeof(msg) - 1);
            nlr_raise(mp_obj_new_exception_arg1(&mp_type_ValueError, arg));
        }
    }
    return mp_obj_new_int(v * 2);
}
static MP_DEFINE_CONST_FUN_OBJ_2(check_obj, check);

static mp_obj_t checked(void) {
    return mp_obj_new_int(n_checked);
}
static MP_DEFINE_CONST_FUN_OBJ_0(checked_obj, checked);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_store_global(MP_QSTR_check, MP_OBJ_FROM_PTR(&check_obj));
    mp_store_global(MP_QSTR_checked, MP_OBJ_FROM_PTR(&checked_obj));
    MP_DYNRUNTIME_INIT_EXIT
}
