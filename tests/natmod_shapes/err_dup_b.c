/* Error shape: a second definition of dup_counter (see err_dup_a.c). */
#include <stdint.h>

intptr_t dup_counter = 2;

intptr_t dup_peek(void) {
    return dup_counter;
}
