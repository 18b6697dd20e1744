/* error.c — the per-thread error message behind imgset_fail() / imgset_error(). */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char error_message[1024];
static _Thread_local ImgsetInterruptHook interrupt_hook;

/* Bytes of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there are not one. */
static int utf8_sequence(const unsigned char *s)
{
    int n = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : s[0] >= 0xe0 && s[0] <= 0xef ? 3
          : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    /* overlong forms, surrogates and code points past U+10FFFF */
    if ((n == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f))) ||
        (n == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))))
        return 0;
    return n;
}

/* Replace every byte of the message that is not part of a valid UTF-8 sequence by '?': a
 * message cut at the buffer's end or by a "%.*s" precision may end in half a character. */
static void repair_utf8(char *message)
{
    unsigned char *s = (unsigned char *)message;
    while (*s) {
        int n = utf8_sequence(s);
        if (n == 0)
            *s++ = '?';
        else
            s += n;
    }
}

int imgset_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    repair_utf8(error_message);
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
    repair_utf8(error_message);
    return -1;
}

const char *imgset_error(void)
{
    return error_message;
}

void imgset_set_interrupt_hook(ImgsetInterruptHook hook)
{
    interrupt_hook = hook;
}

void imgset_check_interrupt(void)
{
    if (interrupt_hook)
        interrupt_hook();
}
