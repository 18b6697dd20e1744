/* notice.c — imgset_notice() and its handler (see notice.h). Kept apart from error.c, which
 * the extension compiles in: a backend never prints. */
#include "notice.h"

#include <stdarg.h>
#include <stdio.h>

static void (*notice_handler)(const char *line);

void imgset_notice(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (notice_handler)
        notice_handler(line);
    else
        fprintf(stderr, "imgset: %s\n", line);   /* one call: lines of threads do not mix */
}

void imgset_set_notice_handler(void (*handler)(const char *line))
{
    notice_handler = handler;
}
