/* clock.h — the one clock every measurement uses (epoch and batch times, data-wait, progress). */
#ifndef IMGSET_CLOCK_H
#define IMGSET_CLOCK_H

/* Seconds on the monotonic clock (CLOCK_MONOTONIC): differences are durations, the value
 * itself means nothing. */
double monotonic_seconds(void);

#endif
