/* classes.c — reading and writing classes.txt (see classes.h for the rules). */
#include "classes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fsutil.h"

int class_name_storable(const char *name)
{
    size_t n = strlen(name);
    return n >= 1 && n <= CLASS_NAME_MAX && !strpbrk(name, "\r\n");
}

/* Add a copy of line to *names (growing it); 0 or -1. */
static int names_push(char ***names, int32_t *count, const char *line)
{
    char **bigger = realloc(*names, sizeof **names * ((size_t)*count + 1));
    if (!bigger)
        return -1;
    *names = bigger;
    if (!(bigger[*count] = strdup(line)))
        return -1;
    (*count)++;
    return 0;
}

int classes_read(const char *dir, DatasetInfo *info)
{
    char *path = fs_path_join(dir, CLASSES_FILE);
    if (!path)
        return -1;
    FILE *f = fopen(path, "r");
    if (!f) {
        int rc = errno == ENOENT ? 1 : imgset_fail("file %s: cannot open: %s", path,
                                                   strerror(errno));
        free(path);
        return rc;
    }
    char *line = NULL, **names = NULL;
    size_t capacity = 0;
    ssize_t length;
    int32_t count = 0;
    int rc = 0, blank_seen = 0;
    long number = 0;
    while (rc == 0 && (length = getline(&line, &capacity, f)) >= 0) {
        number++;
        if (length > 0 && line[length - 1] == '\n')
            line[--length] = '\0';
        if (length > 0 && line[length - 1] == '\r')
            line[--length] = '\0';
        if (length == 0) {
            blank_seen = 1;    /* allowed only after the last name */
            continue;
        }
        if (blank_seen || (size_t)length != strlen(line) || !class_name_storable(line))
            rc = imgset_fail("file %s: line %ld: not a valid class name (1..%d bytes, no NUL, "
                             "no blank line before it)", path, number, CLASS_NAME_MAX);
        else if (count >= IMGSET_MAX_CLASSES)
            rc = imgset_fail("file %s: more than %d class names", path, IMGSET_MAX_CLASSES);
        else if (names_push(&names, &count, line) < 0)
            rc = imgset_fail("file %s: out of memory", path);
    }
    if (rc == 0 && ferror(f))
        rc = imgset_fail("file %s: read error", path);
    if (rc == 0 && count == 0)
        rc = imgset_fail("file %s: 0 class names (expected 1..%d, one per line)", path,
                         IMGSET_MAX_CLASSES);
    if (rc == 0 && dataset_info_set_classes(info, count, (const char *const *)names) < 0)
        rc = imgset_fail("file %s: out of memory", path);
    for (int32_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    free(line);
    fclose(f);
    free(path);
    return rc;
}

int classes_write(const char *dir, const DatasetInfo *info)
{
    for (int32_t i = 0; i < info->num_classes; i++)
        if (!class_name_storable(info->class_names[i]))
            return imgset_fail("%s/%s: class %d's name is empty, longer than %d bytes or "
                               "contains a line break (one name per line)", dir, CLASSES_FILE,
                               i, CLASS_NAME_MAX);
    char *path = fs_path_join(dir, CLASSES_FILE);
    if (!path)
        return -1;
    FILE *f = fopen(path, "w");
    if (!f) {
        imgset_fail("file %s: cannot create: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    for (int32_t i = 0; i < info->num_classes; i++)
        fprintf(f, "%s\n", info->class_names[i]);
    int failed = ferror(f);
    if (fclose(f) != 0 || failed) {
        imgset_fail("file %s: write error: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    free(path);
    return 0;
}
