/*
 * Error shape: plain C meant to be compiled WITHOUT -fpic (the test does that), so
 * that gcc addresses abs_table with absolute 32-bit relocations (R_X86_64_32S for
 * the indexed load, R_X86_64_32 for the address), which a native module cannot use.
 */
#include <stdint.h>

intptr_t abs_table[4] = {10, 20, 30, 40};

intptr_t abs_get(intptr_t i) {
    return abs_table[i & 3];
}

intptr_t *abs_addr(void) {
    return abs_table;
}
