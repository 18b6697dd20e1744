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

/* This thread's last error message ("" when none); valid until the next failure on this thread.
 * Always valid UTF-8: a message cut at the buffer's end, or a byte sequence a "%.*s" cut in half,
 * has the broken bytes replaced by '?'. */
const char *imgset_error(void);

/*
 * Cancellation. A host that must be able to stop long work (the PostgreSQL extension: its hook
 * runs CHECK_FOR_INTERRUPTS) sets a hook on its thread; the library's long loops call
 * imgset_check_interrupt() between steps — the nn core between the ops of a pass, the
 * safetensors parser between entries and tensors, the resizes per row. The hook may not
 * return (the extension's jumps out of a cancelled call): the loops hold no resource at those
 * points. Per thread: other threads (the trainer's workers) never call another's hook.
 */
typedef void (*ImgsetInterruptHook)(void);
void imgset_set_interrupt_hook(ImgsetInterruptHook hook);
void imgset_check_interrupt(void);

#endif
