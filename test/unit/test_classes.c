/* test_classes.c — classes.txt, the one reader and writer the files and mmap stores share:
 * what a valid file is, and that both stores refuse the same bad file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "classes.h"
#include "error.h"
#include "fsutil.h"
#include "store.h"
#include "tap.h"

static char dir[] = "/tmp/imgset-test-classes.XXXXXX";

/* Write DIR/classes.txt with exactly `len` bytes of text. */
static void put_classes(const char *text, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, CLASSES_FILE);
    FILE *f = fopen(path, "wb");
    fwrite(text, 1, len, f);
    fclose(f);
}

/* classes_read of `text`: its status; names into info. */
static int read_text(const char *text, size_t len, DatasetInfo *info)
{
    put_classes(text, len);
    dataset_info_free(info);
    return classes_read(dir, info);
}

static void test_reader(void)
{
    DatasetInfo info = {0};
    ok(classes_read(dir, &info) == 1 && info.num_classes == 0,
       "no classes.txt: status 1, nothing read");
    ok(read_text("cat\ndog\n", 8, &info) == 0 && info.num_classes == 2 &&
           strcmp(info.class_names[0], "cat") == 0 && strcmp(info.class_names[1], "dog") == 0,
       "one name per line, line i is label i");
    ok(read_text("cat\r\ndog", 8, &info) == 0 && info.num_classes == 2 &&
           strcmp(info.class_names[0], "cat") == 0 && strcmp(info.class_names[1], "dog") == 0,
       "\\r\\n line ends, and a last line without one");
    ok(read_text("cat\ndog\n\n\n", 10, &info) == 0 && info.num_classes == 2,
       "blank lines after the last name are allowed");
    ok(read_text("cat\n\ndog\n", 9, &info) < 0 && strstr(imgset_error(), "line 3"),
       "a blank line before a name is refused, naming the line: %s", imgset_error());
    ok(read_text("cat\nd\0g\n", 8, &info) < 0 && strstr(imgset_error(), "line 2"),
       "a NUL inside a name is refused: %s", imgset_error());
    ok(read_text("", 0, &info) < 0 && strstr(imgset_error(), "0 class names") &&
           strstr(imgset_error(), CLASSES_FILE),
       "an empty file is refused, naming it: %s", imgset_error());
    char longest[CLASS_NAME_MAX + 3];
    memset(longest, 'x', CLASS_NAME_MAX);
    longest[CLASS_NAME_MAX] = '\n';
    ok(read_text(longest, CLASS_NAME_MAX + 1, &info) == 0 &&
           strlen(info.class_names[0]) == CLASS_NAME_MAX,
       "a name of %d bytes is read", CLASS_NAME_MAX);
    memset(longest, 'x', CLASS_NAME_MAX + 1);
    longest[CLASS_NAME_MAX + 1] = '\n';
    ok(read_text(longest, CLASS_NAME_MAX + 2, &info) < 0 && strstr(imgset_error(), "line 1"),
       "a name of %d bytes is refused: %s", CLASS_NAME_MAX + 1, imgset_error());
    ok(read_text("\xc3\xa9t\xc3\xa9\n", 6, &info) == 0 &&
           strcmp(info.class_names[0], "\xc3\xa9t\xc3\xa9") == 0,
       "UTF-8 names are kept byte for byte");
    dataset_info_free(&info);
}

static void test_writer(void)
{
    DatasetInfo info = {0}, back = {0};
    const char *names[] = {"b", "a", "a b", "\xc3\xa9"};
    dataset_info_set_classes(&info, 4, names);
    ok(classes_write(dir, &info) == 0 && classes_read(dir, &back) == 0 &&
           back.num_classes == 4 && strcmp(back.class_names[2], "a b") == 0 &&
           strcmp(back.class_names[3], "\xc3\xa9") == 0,
       "write then read gives the same names in the same order");
    const char *bad[] = {"ok", "two\nlines"};
    dataset_info_set_classes(&info, 2, bad);
    ok(classes_write(dir, &info) < 0 && strstr(imgset_error(), "class 1"),
       "a name with a line break is refused, naming its label: %s", imgset_error());
    const char *empty[] = {"ok", ""};
    dataset_info_set_classes(&info, 2, empty);
    ok(classes_write(dir, &info) < 0 && strstr(imgset_error(), "class 1"),
       "an empty name is refused, naming its label: %s", imgset_error());
    dataset_info_free(&info);
    dataset_info_free(&back);
}

/* Both stores read classes.txt through the one reader: the same bad file fails both with the
 * reader's message (before the store looks at anything else). */
static void test_stores_agree(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/imgset.txt", dir);
    FILE *f = fopen(path, "w");
    fputs("imgset-mmap 1\nname t\n", f);   /* read before classes.txt by the mmap store */
    fclose(f);
    for (int i = 0; i < 4; i++) {   /* the class folders of an ImageFolder tree */
        snprintf(path, sizeof path, "%s/%s/%s", dir, i / 2 ? "test" : "train",
                 i % 2 ? "dog" : "cat");
        fs_make_dirs(path);
    }
    put_classes("cat\n\ndog\n", 9);
    const char *schemes[] = {"files", "mmap"};
    for (int i = 0; i < 2; i++) {
        char uri[300];
        snprintf(uri, sizeof uri, "%s:%s", schemes[i], dir);
        Store *s = store_open(uri);
        ok(!s && strstr(imgset_error(), "line 3: not a valid class name"),
           "%s store: a blank line inside classes.txt is refused by the shared reader: %s",
           schemes[i], s ? "(opened)" : imgset_error());
        store_close(s);
    }
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    test_reader();
    test_writer();
    test_stores_agree();
    fs_remove_tree(dir);
    return tap_done();
}
