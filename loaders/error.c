/* error.c — the per-thread error message behind imgset_fail() / imgset_error(). */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char error_message[1024];

int imgset_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return -1;
}

int imgset_fail_prefix(const char *fmt, ...)
{
    char prefix[512], old[sizeof error_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, error_message, sizeof old);
    /* Longer messages are cut at the buffer's end on purpose. */
    size_t n = strlen(prefix);
    memcpy(error_message, prefix, n + 1);
    strncat(error_message, old, sizeof error_message - n - 1);
    return -1;
}

const char *imgset_error(void)
{
    return error_message;
}
