/* Error shape: thread-local storage (.tbss), which a native module has no place for. */
#include <stdint.h>

__thread intptr_t tls_counter;

intptr_t tls_bump(void) {
    return ++tls_counter;
}
