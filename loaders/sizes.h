/* sizes.h — overflow-checked arithmetic for sizes read from files, headers or tables: a size
 * is checked before it is multiplied, so a hostile value can never size an allocation. */
#ifndef IMGSET_SIZES_H
#define IMGSET_SIZES_H

#include <stddef.h>

/* *out = a * b; 0 on success, -1 on overflow. */
static inline int size_mul(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

/* *out = a + b; 0 on success, -1 on overflow. */
static inline int size_add(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

#endif
