/*
 * Second object of the split module (see shape_split_a.c). Plain C: no MicroPython
 * headers, like a kernel file.
 */
#include "shape_split.h"

split_int_t shared_total;
const char split_tag[] = "defined in shape_split_b";

/* same names as file-local things in shape_split_a.c: each object must keep its own */
__attribute__((noinline)) static split_int_t local_twist(split_int_t x) {
    return x - 7;
}
static const char local_name[] = "bB";

__attribute__((weak)) split_int_t split_weak(void) {
    return 1; /* overridden by the strong definition in shape_split_a.c */
}

split_int_t split_call_weak(void) {
    return split_weak();
}

split_int_t split_local_b(split_int_t x) {
    return local_twist(x) * 10 + local_name[x & 1];
}

split_int_t split_accumulate(split_int_t x) {
    shared_total += split_scale(x) - shared_base / 2;
    return shared_total;
}
