/* fsutil.c — join paths, remove / make folder trees (see fsutil.h). */
#define _XOPEN_SOURCE 700
#include "fsutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"

char *fs_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (!path) {
        imgset_fail("out of memory for the path %s/%s", dir, name);
        return NULL;
    }
    snprintf(path, n, "%s/%s", dir, name);
    return path;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT) {
        imgset_fail("cannot remove %s: %s", path, strerror(errno));
        return 1;   /* stop the walk; the message is set */
    }
    return 0;
}

int fs_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : imgset_fail("%s: %s", path, strerror(errno));
    /* The message is set only on failure: callers clean up after another error and must not
     * lose its message. */
    int rc = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (rc < 0)
        return imgset_fail("cannot remove all of %s: %s", path, strerror(errno));
    return rc == 0 ? 0 : -1;
}

int fs_make_dirs(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return imgset_fail("out of memory");
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(copy, 0755) != 0 && errno != EEXIST) {
            imgset_fail("cannot create %s: %s", copy, strerror(errno));
            free(copy);
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    free(copy);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return imgset_fail("%s exists and is not a folder", path);
    return 0;
}
