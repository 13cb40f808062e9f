/*
 * memset, memcpy and memmove for the native module only (not the host library).
 *
 * gcc emits calls to these on its own (struct copies, zeroing of locals) and a
 * native module links against no C library. They are byte loops: small, and safe on
 * Cortex-M0, which faults on unaligned word access. The build passes
 * -fno-tree-loop-distribute-patterns so these loops are not turned back into calls.
 */
#include <stddef.h>

void *memset(void *s, int c, size_t n) {
    unsigned char *p = s;
    while (n--) {
        *p++ = (unsigned char)c;
    }
    return s;
}

void *memcpy(void *restrict dst, const void *restrict src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s) {
        while (n--) {
            *d++ = *s++;
        }
    } else {
        d += n;
        s += n;
        while (n--) {
            *--d = *--s;
        }
    }
    return dst;
}
