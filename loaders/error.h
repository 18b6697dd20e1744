/* error.h — how the library reports failure: a negative return plus a message for the caller. */
#ifndef IMGSET_ERROR_H
#define IMGSET_ERROR_H

/*
 * Every library function that can fail returns a negative number (or NULL) and leaves a
 * one-line message, naming the file / index / value that was wrong, in a per-thread buffer
 * (as stb_image's stbi_failure_reason does). Only the CLI prints it.
 */

#if defined(__GNUC__)
#define IMGSET_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define IMGSET_PRINTF(a, b)
#endif

/* Set this thread's error message; always returns -1 so callers can `return imgset_fail(...)`. */
int imgset_fail(const char *fmt, ...) IMGSET_PRINTF(1, 2);

/* Prefix this thread's current message with more context ("convert: " + message); returns -1. */
int imgset_fail_prefix(const char *fmt, ...) IMGSET_PRINTF(1, 2);

/* This thread's last error message ("" when none); valid until the next failure on this thread. */
const char *imgset_error(void);

#endif
