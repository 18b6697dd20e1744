/* progress.h — a one-line progress bar on a terminal (none in a pipe) and Ctrl-C handling. */
#ifndef IMGSET_PROGRESS_H
#define IMGSET_PROGRESS_H

#include <stdint.h>

typedef struct Progress {
    const char *label;     /* what is running, e.g. "convert train+test" */
    double start;          /* seconds, monotonic */
    double last_draw;
    int enabled;           /* 1 when stderr is a terminal */
    int drawn;             /* 1 once something was drawn (so finish clears the line) */
} Progress;

/* Start a bar; it draws only when stderr is a terminal. */
void progress_start(Progress *p, const char *label);

/* A ProgressFn (see store.h): ctx is a Progress*. Returns 1 once Ctrl-C was pressed. */
int progress_update(void *ctx, int64_t done, int64_t total);

/* Clear the bar's line. */
void progress_finish(Progress *p);

/* Catch SIGINT/SIGTERM so long work stops cleanly through progress_update (no temp left). */
void interrupt_install(void);

/* 1 once SIGINT or SIGTERM arrived. */
int interrupted(void);

#endif
