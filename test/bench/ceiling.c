/* ceiling.c — the physical ceilings a loader cannot beat on this machine: memcpy bandwidth
 * (one thread, large buffers) and reading a file that is in the page cache (read() into a
 * buffer, and touching an mmap of it). Several runs, median and min–max.
 * Usage: build/bench/ceiling [FILE]   (default: a 512 MB scratch file in /tmp) */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RUNS 7

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, double *gbps)
{
    qsort(gbps, RUNS, sizeof *gbps, compare);
    printf("%-34s %7.2f GB/s  (min %.2f, max %.2f, %d runs)\n", what, gbps[RUNS / 2], gbps[0],
           gbps[RUNS - 1], RUNS);
}

int main(int argc, char **argv)
{
    const size_t size = (size_t)512 << 20;
    char *src = malloc(size), *dst = malloc(size);
    if (!src || !dst)
        return perror("malloc"), 1;
    memset(src, 1, size);
    memset(dst, 2, size);
    double gbps[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t = seconds();
        memcpy(dst, src, size);
        gbps[r] = (double)size / (seconds() - t) / 1e9;
    }
    report("memcpy, 512 MB, one thread", gbps);

    char path[256];
    int made = argc < 2;
    snprintf(path, sizeof path, "%s", made ? "/tmp/imgset-ceiling.XXXXXX" : argv[1]);
    int fd = made ? mkstemp(path) : open(path, O_RDONLY);
    if (fd < 0)
        return perror(path), 1;
    if (made && write(fd, src, size) != (ssize_t)size)
        return perror("write"), 1;
    struct stat st;
    fstat(fd, &st);
    size_t n = (size_t)st.st_size < size ? (size_t)st.st_size : size;
    for (int r = -1; r < RUNS; r++) {   /* run -1 warms the page cache */
        double t = seconds();
        size_t done = 0;
        while (done < n) {
            ssize_t got = pread(fd, dst + done, n - done > (8 << 20) ? 8 << 20 : n - done,
                                (off_t)done);
            if (got <= 0)
                return perror("pread"), 1;
            done += (size_t)got;
        }
        if (r >= 0)
            gbps[r] = (double)n / (seconds() - t) / 1e9;
    }
    report("read() of a cached file, 8 MB calls", gbps);
    const unsigned char *map = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        return perror("mmap"), 1;
    volatile unsigned sum = 0;
    for (int r = -1; r < RUNS; r++) {
        double t = seconds();
        memcpy(dst, map, n);   /* what a loader's gather from a mapping does */
        sum += dst[n / 2];
        if (r >= 0)
            gbps[r] = (double)n / (seconds() - t) / 1e9;
    }
    report("memcpy out of a cached mmap", gbps);
    munmap((void *)map, n);
    close(fd);
    if (made)
        unlink(path);
    free(src);
    free(dst);
    return 0;
}
