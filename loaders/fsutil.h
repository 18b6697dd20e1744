/* fsutil.h — paths and folder trees: join a path, remove a tree, make one (what `rm -rf` and
 * `mkdir -p` do, without a shell, so no path is ever pasted into a command line). */
#ifndef IMGSET_FSUTIL_H
#define IMGSET_FSUTIL_H

/* dir + "/" + name in a new malloc'ed string (the caller frees it), or NULL with imgset_fail(). */
char *fs_path_join(const char *dir, const char *name);

/* Remove path and everything below it (links are removed, not followed). A missing path is
 * fine. 0, or -1 with imgset_fail() naming the first entry that could not be removed. */
int fs_remove_tree(const char *path);

/* Make path and its missing parents (mode 0755). 0, or -1 with imgset_fail(). */
int fs_make_dirs(const char *path);

#endif
