/* fsutil.h — folder trees: remove one, make one (what `rm -rf` and `mkdir -p` do, without a
 * shell, so no path is ever pasted into a command line). */
#ifndef IMGSET_FSUTIL_H
#define IMGSET_FSUTIL_H

/* Remove path and everything below it (links are removed, not followed). A missing path is
 * fine. 0, or -1 with imgset_fail() naming the first entry that could not be removed. */
int fs_remove_tree(const char *path);

/* Make path and its missing parents (mode 0755). 0, or -1 with imgset_fail(). */
int fs_make_dirs(const char *path);

#endif
