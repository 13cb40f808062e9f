/* Shared between shape_split_a.c and shape_split_b.c. */
#ifndef SHAPE_SPLIT_H
#define SHAPE_SPLIT_H

#include <stdint.h>

typedef intptr_t split_int_t;

extern split_int_t shared_base;  /* shape_split_a.c, .data */
extern split_int_t shared_total; /* shape_split_b.c, .bss */
extern const char split_tag[];   /* shape_split_b.c, .rodata */

split_int_t split_scale(split_int_t x);      /* in a, called from b */
split_int_t split_accumulate(split_int_t x); /* in b, called from a */
split_int_t split_weak(void);                /* weak in b, strong in a: a's wins */
split_int_t split_call_weak(void);           /* in b: calls split_weak */
split_int_t split_local_b(split_int_t x);    /* in b: uses b's own local_twist */

#endif
