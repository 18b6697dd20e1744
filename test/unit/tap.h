/* tap.h — a tiny TAP producer for the C tests: ok(), skip(), tap_deadline(), tap_done(). */
#ifndef IMGSET_TAP_H
#define IMGSET_TAP_H

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

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

static const char *tap_deadline_what;
static unsigned tap_deadline_seconds;

/* SIGALRM of tap_deadline: one failed test line naming what hung, then exit 1. */
static void tap_deadline_passed(int sig)
{
    char line[300];
    int n = snprintf(line, sizeof line, "not ok %d - %s: no answer in %u s\n", tap_count + 1,
                     tap_deadline_what, tap_deadline_seconds);
    (void)!write(STDOUT_FILENO, line, n > 0 && n < (int)sizeof line ? (size_t)n : 0);
    _exit(1);
}

/* Fail (and end the program) when `what` takes more than `seconds`: a hang becomes a failed
 * test instead of a stuck suite. 0 seconds disarms it. */
static void tap_deadline(unsigned seconds, const char *what) __attribute__((unused));
static void tap_deadline(unsigned seconds, const char *what)
{
    tap_deadline_what = what;
    tap_deadline_seconds = seconds;
    signal(SIGALRM, tap_deadline_passed);
    alarm(seconds);
}

/* Print the plan and return the exit status for main(). */
static int tap_done(void) __attribute__((unused));
static int tap_done(void)
{
    printf("1..%d\n", tap_count);
    return tap_failed ? 1 : 0;
}

#endif
