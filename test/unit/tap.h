/* tap.h — a tiny TAP producer for the C unit tests: ok(), skip(), tap_done(). */
#ifndef IMGSET_TAP_H
#define IMGSET_TAP_H

#include <stdarg.h>
#include <stdio.h>

static int tap_count, tap_failed;
/* Printed before every test's description (the GPU tests mark their emulated runs). */
static const char *tap_prefix __attribute__((unused)) = "";

/* Report one assertion; returns cond so a test can stop on failure. */
static int ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static int ok(int cond, const char *fmt, ...)
{
    va_list ap;
    printf("%sok %d - %s", cond ? "" : "not ", ++tap_count, tap_prefix);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!cond)
        tap_failed++;
    return cond;
}

/* Report one test as skipped, with the reason. */
static void skip(const char *what, const char *reason) __attribute__((unused));
static void skip(const char *what, const char *reason)
{
    printf("ok %d - %s%s # SKIP %s\n", ++tap_count, tap_prefix, what, reason);
    fflush(stdout);
}

/* Print the plan and return the exit status for main(). */
static int tap_done(void) __attribute__((unused));
static int tap_done(void)
{
    printf("1..%d\n", tap_count);
    return tap_failed ? 1 : 0;
}

#endif
