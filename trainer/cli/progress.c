/* progress.c — terminal progress bar and the interrupt flag behind it. */
#include "progress.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "clock.h"

static volatile sig_atomic_t interrupt_flag;

static void on_signal(int sig)
{
    interrupt_flag = 1;
}

void interrupt_install(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int interrupted(void)
{
    return interrupt_flag;
}

void progress_start(Progress *p, const char *label)
{
    p->label = label;
    p->start = monotonic_seconds();
    p->last_draw = 0;
    p->enabled = isatty(STDERR_FILENO);
    p->drawn = 0;
}

int progress_update(void *ctx, int64_t done, int64_t total)
{
    Progress *p = ctx;
    if (p->enabled) {
        double t = monotonic_seconds();
        if (t - p->last_draw >= 0.1 || done == total) {
            double elapsed = t - p->start;
            double frac = total > 0 ? (double)done / (double)total : 1.0;
            double rate = elapsed > 0 ? (double)done / elapsed : 0;
            double eta = rate > 0 ? (double)(total - done) / rate : 0;
            char bar[31];
            int filled = (int)(frac * 30);
            for (int i = 0; i < 30; i++)
                bar[i] = i < filled ? '#' : '.';
            bar[30] = '\0';
            fprintf(stderr, "\r%s [%s] %3.0f%% %lld/%lld  %.0f img/s  ETA %.0fs \033[K",
                    p->label, bar, 100 * frac, (long long)done, (long long)total, rate, eta);
            p->last_draw = t;
            p->drawn = 1;
        }
    }
    return interrupt_flag != 0;
}

void progress_finish(Progress *p)
{
    if (p->enabled && p->drawn)
        fprintf(stderr, "\r\033[K");
}
