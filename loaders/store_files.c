/* store_files.c — the files: store (ImageFolder trees of PNG/JPEG): writer, reader, importer. */
#include "store_files.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "classes.h"
#include "codec.h"
#include "error.h"
#include "fsutil.h"
#include "rng.h"

#define MAX_FOLDER_DEPTH 16   /* deeper class subfolders: most likely a symlink loop */

/* ---- small growable arrays and the string pool --------------------------------------- */

/* Make room for one more element in *items (count used, *capacity allocated); 0 or -1. */
static int grow_for_one(void **items, size_t count, size_t *capacity, size_t elem_size)
{
    if (count < *capacity)
        return 0;
    size_t next = *capacity ? *capacity * 2 : 64, bytes;
    if (size_mul(next, elem_size, &bytes) < 0)
        return imgset_fail("index too large");
    void *bigger = realloc(*items, bytes);
    if (!bigger)
        return imgset_fail("out of memory for a %zu-byte index", bytes);
    *items = bigger;
    *capacity = next;
    return 0;
}

/* NUL-terminated strings packed one after another, referred to by 32-bit offsets. */
typedef struct StringPool {
    char *data;         /* (size) bytes */
    size_t size, capacity;
} StringPool;

/* Append a string; its offset in *offset. 0 or -1. */
static int pool_add(StringPool *pool, const char *text, uint32_t *offset)
{
    size_t length = strlen(text) + 1;
    if (pool->size + length > UINT32_MAX)
        return imgset_fail("more than 4 GiB of file names");
    while (pool->size + length > pool->capacity) {
        size_t next = pool->capacity ? pool->capacity * 2 : 4096;
        char *bigger = realloc(pool->data, next);
        if (!bigger)
            return imgset_fail("out of memory for file names");
        pool->data = bigger;
        pool->capacity = next;
    }
    memcpy(pool->data + pool->size, text, length);
    *offset = (uint32_t)pool->size;
    pool->size += length;
    return 0;
}

/* A list of owned strings. */
typedef struct NameList {
    char **names;       /* (count) malloc'ed strings */
    size_t count, capacity;
} NameList;

static int names_add(NameList *list, const char *name)
{
    if (grow_for_one((void **)&list->names, list->count, &list->capacity, sizeof(char *)) < 0)
        return -1;
    char *copy = strdup(name);
    if (!copy)
        return imgset_fail("out of memory for file names");
    list->names[list->count++] = copy;
    return 0;
}

static void names_free(NameList *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->names[i]);
    free(list->names);
    memset(list, 0, sizeof *list);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort by byte value, which for UTF-8 names is Python's sorted() order (torchvision's). */
static void names_sort(NameList *list)
{
    if (list->count > 1)
        qsort(list->names, list->count, sizeof(char *), compare_strings);
}

/* 1 when path is a directory (following links), 0 when not or missing. */
static int is_directory(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_regular_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* List a directory: sorted subfolders into dirs (may be NULL to ignore them) and sorted
 * regular files into files (NULL to ignore). Names starting with '.' are skipped; anything
 * else (a FIFO, a device) is an error, since opening it could block. 0 or -1. */
static int list_directory(const char *path, NameList *dirs, NameList *files)
{
    DIR *dir = opendir(path);
    if (!dir)
        return imgset_fail("%s: cannot open folder: %s", path, strerror(errno));
    int rc = 0;
    struct dirent *entry;
    errno = 0;
    while (rc == 0 && (entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        int type = entry->d_type;
        if (type == DT_UNKNOWN || type == DT_LNK) {
            struct stat st;
            char *full = fs_path_join(path, entry->d_name);
            if (!full) {
                rc = -1;
                break;
            }
            int stat_rc = stat(full, &st);
            free(full);
            if (stat_rc < 0) {
                rc = imgset_fail("%s/%s: cannot stat: %s", path, entry->d_name,
                                 strerror(errno));
                break;
            }
            type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
        }
        if (type == DT_DIR) {
            if (dirs)
                rc = names_add(dirs, entry->d_name);
        } else if (type == DT_REG) {
            if (files)
                rc = names_add(files, entry->d_name);
        } else if (files) {
            rc = imgset_fail("%s/%s: not a regular file or folder", path, entry->d_name);
        }
        errno = 0;
    }
    if (rc == 0 && errno != 0)
        rc = imgset_fail("%s: cannot read folder: %s", path, strerror(errno));
    closedir(dir);
    if (dirs)
        names_sort(dirs);
    if (files)
        names_sort(files);
    return rc;
}

/* 1 when name ends in ".png", ".jpg" or ".jpeg" (any case). */
static int has_image_extension(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && dot != name &&
           (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 ||
            strcasecmp(dot, ".jpeg") == 0);
}

/* ---- the reader's index -------------------------------------------------------------- */

/* One image: DIR/<folder>/<name>, with its label. */
typedef struct FileEntry {
    uint32_t folder;    /* offset of the folder path (relative to DIR) in the pool */
    uint32_t name;      /* offset of the file name in the pool */
    int32_t label;
} FileEntry;

typedef struct EntryList {
    FileEntry *entries; /* (count) */
    size_t count, capacity;
} EntryList;

static int entries_add(EntryList *list, FileEntry entry)
{
    if (grow_for_one((void **)&list->entries, list->count, &list->capacity,
                     sizeof(FileEntry)) < 0)
        return -1;
    list->entries[list->count++] = entry;
    return 0;
}

/* A class name and its label, kept sorted by name for lookups. */
typedef struct ClassKey {
    const char *name;
    int32_t label;
} ClassKey;

static int compare_class_keys(const void *a, const void *b)
{
    return strcmp(((const ClassKey *)a)->name, ((const ClassKey *)b)->name);
}

typedef enum Layout {
    LAYOUT_SPLITS,      /* DIR/train/<class>, DIR/test/<class> (or DIR/val/<class>) */
    LAYOUT_TINY,        /* Tiny ImageNet: DIR/train/<wnid>/images, DIR/val/images + annotations */
    LAYOUT_FLAT,        /* DIR/<class>, split by a seeded held-out fraction */
} Layout;

/* What the opener asks for: plain files: reading, or the importer's layouts. */
typedef struct ScanOptions {
    int importer;           /* 0: files: (split tree only); 1: detect the layout */
    double heldout_fraction;
    uint64_t seed;
} ScanOptions;

typedef struct FilesReader {
    char *root;                     /* DIR, as given */
    StringPool pool;                /* folder paths and file names */
    EntryList split[SPLIT_COUNT];   /* images in split order */
    ImageShape *shapes[SPLIT_COUNT];/* (split count) probed at open, channels as read */
    int want_channels;              /* 0 (every image grey: keep 1) or 3 */
    CodecScratch scratch;
    char *path;                     /* (path_capacity) the last built file path */
    size_t path_capacity;
    /* Only during open: */
    ClassKey *class_keys;           /* (num_classes) sorted by name */
    int32_t num_classes;
    const char *class_source;       /* where the classes came from, for messages */
} FilesReader;

/* DIR/<folder>/<name> of an entry in r->path (reused); NULL with imgset_fail(). */
static const char *entry_path(FilesReader *r, const FileEntry *e)
{
    const char *folder = r->pool.data + e->folder, *name = r->pool.data + e->name;
    size_t need = strlen(r->root) + strlen(folder) + strlen(name) + 3;
    if (need > r->path_capacity) {
        char *bigger = realloc(r->path, need);
        if (!bigger) {
            imgset_fail("out of memory for a path");
            return NULL;
        }
        r->path = bigger;
        r->path_capacity = need;
    }
    snprintf(r->path, need, "%s/%s/%s", r->root, folder, name);
    return r->path;
}

/* The label of a class folder name, or -1 (no imgset_fail) when it is not a known class. */
static int32_t class_label(const FilesReader *r, const char *name)
{
    ClassKey key = {name, 0};
    const ClassKey *hit = bsearch(&key, r->class_keys, (size_t)r->num_classes, sizeof key,
                                  compare_class_keys);
    return hit ? hit->label : -1;
}

/* A class name usable as a folder name (and so in classes.txt). */
static int class_name_valid(const char *name)
{
    return name[0] != '\0' && name[0] != '.' && strlen(name) < 256 && !strchr(name, '/') &&
           !strchr(name, '\n') && !strchr(name, '\r');
}

/* Set the data set's classes (label order) and the sorted lookup table; 0 or -1. */
static int set_classes(Store *s, FilesReader *r, const NameList *names, const char *source)
{
    if (names->count < 1)
        return imgset_fail("%s: no class folders found in %s", s->uri, source);
    if (names->count > IMGSET_MAX_CLASSES)
        return imgset_fail("%s: %zu classes in %s, more than the %d allowed", s->uri,
                           names->count, source, IMGSET_MAX_CLASSES);
    if (dataset_info_set_classes(&s->info, (int32_t)names->count,
                                 (const char *const *)names->names) < 0)
        return -1;
    r->num_classes = (int32_t)names->count;
    r->class_keys = calloc(names->count, sizeof(ClassKey));
    if (!r->class_keys)
        return imgset_fail("out of memory for class names");
    for (size_t i = 0; i < names->count; i++)
        r->class_keys[i] = (ClassKey){s->info.class_names[i], (int32_t)i};
    qsort(r->class_keys, names->count, sizeof(ClassKey), compare_class_keys);
    for (size_t i = 1; i < names->count; i++)
        if (strcmp(r->class_keys[i - 1].name, r->class_keys[i].name) == 0)
            return imgset_fail("%s: class \"%s\" is listed twice in %s", s->uri,
                               r->class_keys[i].name, source);
    return 0;
}

/* One folder found under a class folder, with its image files (sorted). */
typedef struct FolderFiles {
    char *path;         /* relative to DIR */
    NameList files;
} FolderFiles;

static int compare_folder_paths(const void *a, const void *b)
{
    return strcmp(((const FolderFiles *)a)->path, ((const FolderFiles *)b)->path);
}

/*
 * Add every image under DIR/<rel> (subfolders included) to out with the given label, in
 * torchvision's order: folders sorted by path (as sorted(os.walk()) does), names sorted
 * within. A file without a PNG/JPEG name, or no image at all, is an error.
 */
static int scan_image_folder(Store *s, FilesReader *r, const char *rel, int32_t label,
                             EntryList *out)
{
    FolderFiles *folders = NULL;
    size_t count = 0, capacity = 0, images = 0;
    int rc = 0;
    if (grow_for_one((void **)&folders, 0, &capacity, sizeof *folders) < 0)
        return -1;
    folders[count++] = (FolderFiles){strdup(rel), {0}};
    if (!folders[0].path)
        rc = imgset_fail("out of memory");
    /* Breadth-first over the subtree; folders[] grows as subfolders are found. */
    for (size_t i = 0; rc == 0 && i < count; i++) {
        char *full = fs_path_join(r->root, folders[i].path);
        NameList subdirs = {0};
        if (!full) {
            rc = -1;
            break;
        }
        rc = list_directory(full, &subdirs, &folders[i].files);
        free(full);
        for (size_t d = 0; rc == 0 && d < subdirs.count; d++) {
            int depth = 0;
            for (const char *p = folders[i].path; *p; p++)
                depth += *p == '/';
            if (depth > MAX_FOLDER_DEPTH) {
                rc = imgset_fail("%s: %s/%s: folders nested too deep (a symlink loop?)",
                                 s->uri, folders[i].path, subdirs.names[d]);
                break;
            }
            if ((rc = grow_for_one((void **)&folders, count, &capacity, sizeof *folders)) < 0)
                break;
            char *sub = fs_path_join(folders[i].path, subdirs.names[d]);
            if (!sub) {
                rc = -1;
                break;
            }
            folders[count++] = (FolderFiles){sub, {0}};
        }
        names_free(&subdirs);
    }
    if (rc == 0 && count > 1)
        qsort(folders, count, sizeof *folders, compare_folder_paths);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        if (folders[i].files.count == 0)
            continue;
        FileEntry entry = {0, 0, label};
        if ((rc = pool_add(&r->pool, folders[i].path, &entry.folder)) < 0)
            break;
        for (size_t f = 0; rc == 0 && f < folders[i].files.count; f++) {
            const char *name = folders[i].files.names[f];
            if (!has_image_extension(name)) {
                rc = imgset_fail("%s: %s/%s/%s: not a PNG or JPEG file (by its name)", s->uri,
                                 r->root, folders[i].path, name);
                break;
            }
            if ((rc = pool_add(&r->pool, name, &entry.name)) < 0 ||
                (rc = entries_add(out, entry)) < 0)
                break;
            images++;
        }
    }
    for (size_t i = 0; i < count; i++) {
        free(folders[i].path);
        names_free(&folders[i].files);
    }
    free(folders);
    if (rc == 0 && images == 0)
        rc = imgset_fail("%s: %s/%s: empty class folder (no PNG or JPEG files)", s->uri,
                         r->root, rel);
    return rc;
}

/* Scan DIR/<split_dir>/<class>/... for every class folder into out; 0 or -1.
 * images_subfolder is "images" for Tiny ImageNet's train/<wnid>/images, else NULL. */
static int scan_split_tree(Store *s, FilesReader *r, const char *split_dir,
                           const NameList *folders, const char *images_subfolder,
                           EntryList *out)
{
    for (size_t c = 0; c < folders->count; c++) {
        const char *name = folders->names[c];
        int32_t label = class_label(r, name);
        if (label < 0)
            return imgset_fail("%s: %s/%s/%s: class folder not listed in %s", s->uri, r->root,
                               split_dir, name, r->class_source);
        char *rel;
        if (asprintf(&rel, "%s%s%s%s%s", split_dir, *split_dir ? "/" : "", name,
                     images_subfolder ? "/" : "", images_subfolder ? images_subfolder : "") <
            0)
            return imgset_fail("out of memory for a path");
        int rc = scan_image_folder(s, r, rel, label, out);
        free(rel);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* The subfolders of DIR/<rel> (sorted), which must exist; 0 or -1. */
static int list_class_folders(Store *s, FilesReader *r, const char *rel, NameList *folders)
{
    char *full = *rel ? fs_path_join(r->root, rel) : strdup(r->root);
    if (!full)
        return imgset_fail("out of memory for a path");
    int rc = is_directory(full) ? list_directory(full, folders, NULL)
                                : imgset_fail("%s: %s is not a folder", s->uri, full);
    free(full);
    return rc;
}

/* Classes from DIR/classes.txt if present (each name must be a folder name), else from the
 * given folder names; 0 or -1. */
static int choose_classes(Store *s, FilesReader *r, const NameList *folders, const char *what)
{
    DatasetInfo listed = {0};
    int rc = classes_read(r->root, &listed);
    for (int32_t i = 0; rc == 0 && i < listed.num_classes; i++)
        if (!class_name_valid(listed.class_names[i]))
            rc = imgset_fail("%s: %s line %d: \"%s\" cannot be a class folder's name", s->uri,
                             CLASSES_FILE, i + 1, listed.class_names[i]);
    if (rc == 0) {
        NameList names = {listed.class_names, (size_t)listed.num_classes,
                          (size_t)listed.num_classes};   /* a view: listed owns the names */
        r->class_source = CLASSES_FILE;
        rc = set_classes(s, r, &names, CLASSES_FILE);
    } else if (rc == 1) {
        r->class_source = "the train split's class folders";
        rc = set_classes(s, r, folders, what);
    }
    dataset_info_free(&listed);
    return rc;
}

/* When every file of a split is named <integer>.png and the integers are exactly 0..N-1
 * (this store's own layout), put the entries in that order. 0 or -1. */
static int order_by_index_names(FilesReader *r, EntryList *list)
{
    size_t n = list->count;
    if (n == 0)
        return 0;
    int64_t *position = malloc(n * sizeof *position);
    if (!position)
        return imgset_fail("out of memory");
    for (size_t i = 0; i < n; i++)
        position[i] = -1;
    int own_layout = 1;
    for (size_t i = 0; own_layout && i < n; i++) {
        const char *name = r->pool.data + list->entries[i].name;
        uint64_t value = 0;
        size_t digits = 0;
        for (; name[digits] >= '0' && name[digits] <= '9' && digits < 19; digits++)
            value = value * 10 + (uint64_t)(name[digits] - '0');
        own_layout = digits > 0 && strcasecmp(name + digits, ".png") == 0 && value < n &&
                     position[value] < 0;
        if (own_layout)
            position[value] = (int64_t)i;
    }
    if (own_layout) {
        FileEntry *ordered = malloc(n * sizeof *ordered);
        if (!ordered) {
            free(position);
            return imgset_fail("out of memory");
        }
        for (size_t v = 0; v < n; v++)
            ordered[v] = list->entries[position[v]];
        free(list->entries);
        list->entries = ordered;
        list->capacity = n;
    }
    free(position);
    return 0;
}

/* Parse Tiny ImageNet's val_annotations.txt ("file<TAB>wnid<TAB>box...") and label every
 * entry of list by its file name; 0 or -1. */
static int label_from_annotations(Store *s, FilesReader *r, const char *annotations,
                                  EntryList *list)
{
    FILE *f = fopen(annotations, "r");
    if (!f)
        return imgset_fail("%s: cannot open: %s", annotations, strerror(errno));
    ClassKey *by_file = NULL;    /* (count) file name -> label, sorted by name */
    size_t count = 0, capacity = 0;
    char *line = NULL;
    size_t line_capacity = 0;
    long line_number = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &line_capacity, f) >= 0) {
        line_number++;
        char *save = NULL, *file = strtok_r(line, "\t\r\n", &save);
        char *wnid = file ? strtok_r(NULL, "\t\r\n", &save) : NULL;
        if (!file)
            continue;
        int32_t label = wnid ? class_label(r, wnid) : -1;
        if (label < 0) {
            rc = imgset_fail("%s: line %ld: %s", annotations, line_number,
                             wnid ? "class is not a train folder" : "expected file<TAB>class");
            break;
        }
        char *copy = strdup(file);
        if (!copy || grow_for_one((void **)&by_file, count, &capacity, sizeof *by_file) < 0) {
            free(copy);
            rc = imgset_fail("out of memory");
            break;
        }
        by_file[count++] = (ClassKey){copy, label};
    }
    free(line);
    fclose(f);
    if (rc == 0 && count > 1)
        qsort(by_file, count, sizeof *by_file, compare_class_keys);
    for (size_t i = 0; rc == 0 && i < list->count; i++) {
        ClassKey key = {r->pool.data + list->entries[i].name, 0};
        const ClassKey *hit = bsearch(&key, by_file, count, sizeof key, compare_class_keys);
        if (!hit)
            rc = imgset_fail("%s: %s/%s/%s: not listed in %s", s->uri, r->root,
                             r->pool.data + list->entries[i].folder, key.name, annotations);
        else
            list->entries[i].label = hit->label;
    }
    for (size_t i = 0; i < count; i++)
        free((char *)by_file[i].name);
    free(by_file);
    return rc;
}

/* DIR/<class>/... for every class, a seeded held-out fraction of each class to test. */
static int scan_flat(Store *s, FilesReader *r, const NameList *folders, double fraction,
                     uint64_t seed)
{
    EntryList one = {0};
    size_t *order = NULL;
    uint8_t *held_out = NULL;
    int rc = 0;
    for (size_t c = 0; rc == 0 && c < folders->count; c++) {
        int32_t label = class_label(r, folders->names[c]);
        if (label < 0) {
            rc = imgset_fail("%s: %s/%s: class folder not listed in %s", s->uri, r->root,
                             folders->names[c], r->class_source);
            break;
        }
        one.count = 0;
        if ((rc = scan_image_folder(s, r, folders->names[c], label, &one)) < 0)
            break;
        size_t n = one.count, k = (size_t)floor((double)n * fraction + 0.5);
        free(order);
        free(held_out);
        order = malloc(n * sizeof *order);
        held_out = calloc(n, 1);
        if (!order || !held_out) {
            rc = imgset_fail("out of memory");
            break;
        }
        /* A partial Fisher–Yates shuffle, seeded per class (by label) so each class's pick
         * does not depend on the others. */
        Rng rng = rng_make(seed, (uint64_t)label);
        for (size_t i = 0; i < n; i++)
            order[i] = i;
        for (size_t i = 0; i < k; i++) {
            size_t j = i + (size_t)rng_below(&rng, n - i), t = order[i];
            order[i] = order[j];
            order[j] = t;
            held_out[order[i]] = 1;
        }
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = entries_add(&r->split[held_out[i] ? SPLIT_TEST : SPLIT_TRAIN],
                             one.entries[i]);
    }
    free(order);
    free(held_out);
    free(one.entries);
    return rc;
}

/* Build the whole index for the layout; 0 or -1. */
static int scan_tree(Store *s, FilesReader *r, const ScanOptions *options)
{
    Layout layout = LAYOUT_SPLITS;
    char *train = fs_path_join(r->root, "train");
    char *annotations = fs_path_join(r->root, "val/val_annotations.txt");
    char *test = fs_path_join(r->root, "test");
    char *val = fs_path_join(r->root, "val");
    if (!train || !annotations || !test || !val) {
        free(train);
        free(annotations);
        free(test);
        free(val);
        return imgset_fail("out of memory for a path");
    }
    int have_train = is_directory(train), have_test = is_directory(test);
    int have_val = is_directory(val);
    const char *test_dir = "test";
    if (options->importer) {
        if (have_train && is_regular_file(annotations))
            layout = LAYOUT_TINY;
        else if (!have_train)
            layout = LAYOUT_FLAT;
        else if (!have_test)
            test_dir = "val";
    }
    free(train);
    free(test);
    free(val);
    int rc = 0;
    if (!is_directory(r->root))
        rc = imgset_fail("%s: %s is not a folder", s->uri, r->root);
    else if (layout == LAYOUT_SPLITS && !have_train)
        rc = imgset_fail("%s: %s has no train/ folder: not an ImageFolder tree", s->uri,
                         r->root);
    else if (layout == LAYOUT_SPLITS && !have_test &&
             (!options->importer || !have_val))
        rc = imgset_fail("%s: %s has train/ but no test/%s folder", s->uri, r->root,
                         options->importer ? " (or val/)" : "");

    NameList train_folders = {0}, test_folders = {0};
    if (rc == 0 && layout == LAYOUT_FLAT) {
        if (options->heldout_fraction < 0 || options->heldout_fraction > 1 ||
            isnan(options->heldout_fraction))
            rc = imgset_fail("%s: held-out fraction %g is not within 0..1", s->uri,
                             options->heldout_fraction);
        if (rc == 0)
            rc = list_class_folders(s, r, "", &train_folders);
        if (rc == 0)
            rc = choose_classes(s, r, &train_folders, r->root);
        if (rc == 0)
            rc = scan_flat(s, r, &train_folders, options->heldout_fraction, options->seed);
    } else if (rc == 0) {
        rc = list_class_folders(s, r, "train", &train_folders);
        if (rc == 0)
            rc = choose_classes(s, r, &train_folders, "train/");
        if (rc == 0)
            rc = scan_split_tree(s, r, "train", &train_folders,
                                 layout == LAYOUT_TINY ? "images" : NULL,
                                 &r->split[SPLIT_TRAIN]);
        if (rc == 0 && layout == LAYOUT_TINY) {
            rc = scan_image_folder(s, r, "val/images", 0, &r->split[SPLIT_TEST]);
            if (rc == 0)
                rc = label_from_annotations(s, r, annotations, &r->split[SPLIT_TEST]);
        } else if (rc == 0) {
            rc = list_class_folders(s, r, test_dir, &test_folders);
            if (rc == 0)
                rc = scan_split_tree(s, r, test_dir, &test_folders, NULL,
                                     &r->split[SPLIT_TEST]);
        }
    }
    names_free(&train_folders);
    names_free(&test_folders);
    free(annotations);
    for (int split = 0; rc == 0 && split < SPLIT_COUNT; split++) {
        if (r->split[split].count == 0)
            rc = imgset_fail("%s: the %s split is empty%s", s->uri, split_names[split],
                             layout == LAYOUT_FLAT && split == SPLIT_TEST
                                 ? " (raise the held-out fraction)"
                                 : "");
        else
            rc = order_by_index_names(r, &r->split[split]);
    }
    return rc;
}

/* Probe every image header: shapes, the channel count of the store, fixed or ragged. */
static int probe_all(Store *s, FilesReader *r)
{
    int all_grey = 1;
    for (int split = 0; split < SPLIT_COUNT; split++) {
        size_t n = r->split[split].count;
        r->shapes[split] = malloc(n * sizeof(ImageShape));
        if (!r->shapes[split])
            return imgset_fail("out of memory for %zu image shapes", n);
        for (size_t i = 0; i < n; i++) {
            const char *path = entry_path(r, &r->split[split].entries[i]);
            int native;
            if (!path ||
                codec_probe_file(&r->scratch, path, 0, &r->shapes[split][i], &native) < 0)
                return imgset_fail_prefix("%s: %s image %zu: ", s->uri, split_names[split], i);
            all_grey &= native == 1;
        }
    }
    r->want_channels = all_grey ? 0 : 3;
    for (int split = 0; split < SPLIT_COUNT; split++) {
        size_t n = r->split[split].count;
        ImageShape *shapes = r->shapes[split];
        int fixed = 1;
        for (size_t i = 0; i < n; i++) {
            shapes[i].channels = all_grey ? 1 : 3;
            fixed &= shapes[i].height == shapes[0].height && shapes[i].width == shapes[0].width;
        }
        SplitInfo *info = &s->info.split[split];
        info->count = (int64_t)n;
        if (fixed)
            info->shape = shapes[0];
        else
            info->shape = (ImageShape){0, 0, 0};
    }
    return 0;
}

static void files_close(Store *s)
{
    FilesReader *r = s->impl;
    if (!r)
        return;
    for (int split = 0; split < SPLIT_COUNT; split++) {
        free(r->split[split].entries);
        free(r->shapes[split]);
    }
    free(r->pool.data);
    free(r->class_keys);
    free(r->path);
    free(r->root);
    codec_scratch_free(&r->scratch);
    free(r);
    s->impl = NULL;
}

/* The data set's name: DIR's last component. */
static void set_name_from_dir(DatasetInfo *info, const char *dir)
{
    size_t end = strlen(dir);
    while (end > 1 && dir[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    char name[IMGSET_NAME_MAX];
    size_t length = end - start < sizeof name - 1 ? end - start : sizeof name - 1;
    memcpy(name, dir + start, length);
    name[length] = '\0';
    dataset_info_set_name(info, name);
}

static int open_with_options(Store *s, const char *location, const ScanOptions *options)
{
    FilesReader *r = calloc(1, sizeof *r);
    if (!r)
        return imgset_fail("out of memory");
    s->impl = r;
    r->root = strdup(location);
    if (!r->root || scan_tree(s, r, options) < 0 || probe_all(s, r) < 0) {
        if (!r->root)
            imgset_fail("out of memory");
        files_close(s);
        return -1;
    }
    free(r->class_keys);    /* only needed while scanning */
    r->class_keys = NULL;
    set_name_from_dir(&s->info, location);
    return 0;
}

static int files_open(Store *s, const char *location)
{
    ScanOptions options = {0, 0.0, 0};
    return open_with_options(s, location, &options);
}

static int files_image_shape(Store *s, int split, int64_t index, ImageShape *shape)
{
    FilesReader *r = s->impl;
    *shape = r->shapes[split][index];
    return 0;
}

static int files_read_image(Store *s, int split, int64_t index, uint8_t *dst, size_t capacity,
                            ImageShape *shape, int32_t *label)
{
    FilesReader *r = s->impl;
    const FileEntry *e = &r->split[split].entries[index];
    const char *path = entry_path(r, e);
    if (!path || codec_decode_file(&r->scratch, path, r->want_channels, dst, capacity, shape) < 0)
        return imgset_fail_prefix("%s: %s image %lld: ", s->uri, split_names[split],
                                  (long long)index);
    const ImageShape *expected = &r->shapes[split][index];
    if (!image_shape_equal(*shape, *expected))
        return imgset_fail("%s: %s image %lld: %s is %dx%dx%d, but was %dx%dx%d when the store "
                           "was opened (changed on disk?)", s->uri, split_names[split],
                           (long long)index, path, shape->height, shape->width,
                           shape->channels, expected->height, expected->width,
                           expected->channels);
    *label = e->label;
    return 0;
}

/* ---- the writer ---------------------------------------------------------------------- */

/*
 * PNG encoding (~150 µs for a 32x32 image, most of a write) runs on a few encoder threads:
 * write_image() queues a copy of the pixels and its path, the encoders write the files in any
 * order (each has its own name), and the first failure is kept and returned by the next
 * write_image() or by commit(), which waits for the queue to empty. Abort drops what is
 * queued. Nothing is renamed into place before every file is written.
 */
#define ENCODERS_MAX 8
#define QUEUE_PER_ENCODER 4

typedef struct PngJob {
    char *path;
    uint8_t *pixels;
    ImageShape shape;
    int split;
    int64_t index;
} PngJob;

typedef struct FilesWriter {
    char *final_dir;                  /* DIR */
    char *temp_dir;                   /* DIR.tmp-<pid>, renamed to DIR at commit */
    int index_width[SPLIT_COUNT];     /* digits of the largest index in each split */
    uint8_t *class_made[SPLIT_COUNT]; /* (num_classes) 1 once <split>/<class>/ exists */
    char *path;                       /* (path_capacity) reused for file paths */
    size_t path_capacity;
    const char *uri;                  /* the store's, for messages */
    /* the encoders and their queue (a ring of jobs), under lock */
    pthread_mutex_t lock;
    pthread_cond_t changed;           /* a job queued or taken, an encoder idle, quit */
    pthread_t encoders[ENCODERS_MAX];
    int encoder_count, busy, quit;
    PngJob queue[ENCODERS_MAX * QUEUE_PER_ENCODER];
    int queue_head, queue_length, queue_capacity;
    char error[1024];                 /* the first failure, "" while none */
} FilesWriter;

static void png_job_free(PngJob *job)
{
    free(job->path);
    free(job->pixels);
}

static void *encoder_main(void *arg)
{
    FilesWriter *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->quit && w->queue_length == 0)
            pthread_cond_wait(&w->changed, &w->lock);
        if (w->queue_length == 0)   /* quit, and nothing left to write */
            break;
        PngJob job = w->queue[w->queue_head];
        w->queue_head = (w->queue_head + 1) % w->queue_capacity;
        w->queue_length--;
        w->busy++;
        int skip = w->error[0] != '\0';   /* after a failure the store is doomed */
        pthread_cond_broadcast(&w->changed);
        pthread_mutex_unlock(&w->lock);
        int rc = skip ? 0 : codec_png_write_file(job.path, job.pixels, job.shape);
        if (rc < 0)
            imgset_fail_prefix("%s: %s image %lld: ", w->uri, split_names[job.split],
                               (long long)job.index);
        png_job_free(&job);
        pthread_mutex_lock(&w->lock);
        if (rc < 0 && !w->error[0])
            snprintf(w->error, sizeof w->error, "%s", imgset_error());
        w->busy--;
        pthread_cond_broadcast(&w->changed);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Start the encoders: one per core, at most ENCODERS_MAX; 0 threads is fine (the caller then
 * writes itself). */
static void encoders_start(FilesWriter *w)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int want = cores < 1 ? 1 : cores > ENCODERS_MAX ? ENCODERS_MAX : (int)cores;
    w->queue_capacity = want * QUEUE_PER_ENCODER;
    for (int i = 0; i < want; i++) {
        if (pthread_create(&w->encoders[i], NULL, encoder_main, w) != 0)
            break;
        w->encoder_count++;
    }
}

/* Stop the encoders: finish the queue (drop = 0) or drop it (drop = 1), then join them. */
static void encoders_stop(FilesWriter *w, int drop)
{
    pthread_mutex_lock(&w->lock);
    if (drop) {
        for (; w->queue_length > 0; w->queue_length--) {
            png_job_free(&w->queue[w->queue_head]);
            w->queue_head = (w->queue_head + 1) % w->queue_capacity;
        }
    }
    w->quit = 1;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->encoder_count; i++)
        pthread_join(w->encoders[i], NULL);
    w->encoder_count = 0;
}

/* Queue one PNG (path and pixels are copied); -1 with the first failure so far. */
static int encoders_queue(FilesWriter *w, const char *path, const uint8_t *pixels,
                          ImageShape shape, int split, int64_t index)
{
    size_t bytes = image_shape_bytes(shape);
    PngJob job = {strdup(path), malloc(bytes ? bytes : 1), shape, split, index};
    if (!job.path || !job.pixels) {
        png_job_free(&job);
        return imgset_fail("out of memory for a queued PNG");
    }
    memcpy(job.pixels, pixels, bytes);
    pthread_mutex_lock(&w->lock);
    while (!w->error[0] && w->queue_length == w->queue_capacity)
        pthread_cond_wait(&w->changed, &w->lock);
    int failed = w->error[0] != '\0';
    if (failed)
        imgset_fail("%s", w->error);
    else {
        w->queue[(w->queue_head + w->queue_length) % w->queue_capacity] = job;
        w->queue_length++;
        pthread_cond_broadcast(&w->changed);
    }
    pthread_mutex_unlock(&w->lock);
    if (failed)
        png_job_free(&job);
    return failed ? -1 : 0;
}

/* Remove a folder tree we created; errors are ignored (this is cleanup). */
static void remove_tree(const char *dir)
{
    (void)fs_remove_tree(dir);
}

static void writer_free(Store *s)
{
    FilesWriter *w = s->impl;
    if (!w)
        return;
    encoders_stop(w, 1);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->changed);
    free(w->final_dir);
    free(w->temp_dir);
    for (int i = 0; i < SPLIT_COUNT; i++)
        free(w->class_made[i]);
    free(w->path);
    free(w);
    s->impl = NULL;
}

static void files_abort(Store *s)
{
    FilesWriter *w = s->impl;
    if (!w)
        return;
    encoders_stop(w, 1);   /* before removing the files they write */
    if (w->temp_dir)
        remove_tree(w->temp_dir);
    writer_free(s);
}

/* mkdir that names the folder on failure. */
static int make_folder(const char *path)
{
    if (mkdir(path, 0777) < 0)
        return imgset_fail("%s: cannot create folder: %s", path, strerror(errno));
    return 0;
}

static int files_create(Store *s, const char *location, const DatasetInfo *info)
{
    size_t length = strlen(location);
    while (length > 1 && location[length - 1] == '/')
        length--;
    if (length == 0)
        return imgset_fail("%s: empty folder name", s->uri);
    for (int32_t i = 0; i < info->num_classes; i++)
        if (!class_name_valid(info->class_names[i]))
            return imgset_fail("%s: class %d name \"%s\" cannot be a folder name (empty, "
                               "leading '.', '/' or a newline)", s->uri, i,
                               info->class_names[i]);
    char **sorted = malloc((size_t)info->num_classes * sizeof *sorted);
    if (!sorted)
        return imgset_fail("out of memory");
    memcpy(sorted, info->class_names, (size_t)info->num_classes * sizeof *sorted);
    qsort(sorted, (size_t)info->num_classes, sizeof *sorted, compare_strings);
    for (int32_t i = 1; i < info->num_classes; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            imgset_fail("%s: two classes are named \"%s\"", s->uri, sorted[i]);
            free(sorted);
            return -1;
        }
    free(sorted);

    FilesWriter *w = calloc(1, sizeof *w);
    if (!w)
        return imgset_fail("out of memory");
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->changed, NULL);
    w->uri = s->uri;
    s->impl = w;
    w->final_dir = strndup(location, length);
    if (!w->final_dir || asprintf(&w->temp_dir, "%s.tmp-%ld", w->final_dir, (long)getpid()) < 0) {
        w->temp_dir = NULL;
        writer_free(s);
        return imgset_fail("out of memory");
    }
    struct stat st;
    if (lstat(w->final_dir, &st) == 0) {
        imgset_fail("%s: %s already exists", s->uri, w->final_dir);
        writer_free(s);
        return -1;
    }
    for (int split = 0; split < SPLIT_COUNT; split++) {
        int width = 1;
        for (int64_t top = info->split[split].count - 1; top >= 10; top /= 10)
            width++;
        w->index_width[split] = width;
        w->class_made[split] = calloc((size_t)info->num_classes, 1);
        if (!w->class_made[split]) {
            writer_free(s);
            return imgset_fail("out of memory");
        }
    }
    if (make_folder(w->temp_dir) < 0) {
        char *keep = w->temp_dir;    /* not ours to remove: it existed before */
        w->temp_dir = NULL;
        free(keep);
        writer_free(s);
        return -1;
    }
    for (int split = 0; split < SPLIT_COUNT; split++) {
        char *dir = fs_path_join(w->temp_dir, split_names[split]);
        if (!dir || make_folder(dir) < 0) {
            free(dir);
            files_abort(s);
            return -1;
        }
        free(dir);
    }
    encoders_start(w);
    return 0;
}

/* TEMP/<split>/<class> (+ "/" + file when file is not NULL) into w->path; NULL on failure. */
static const char *writer_path(FilesWriter *w, int split, const char *class_name,
                               const char *file)
{
    size_t need = strlen(w->temp_dir) + strlen(class_name) + (file ? strlen(file) : 0) + 16;
    if (need > w->path_capacity) {
        char *bigger = realloc(w->path, need);
        if (!bigger) {
            imgset_fail("out of memory for a path");
            return NULL;
        }
        w->path = bigger;
        w->path_capacity = need;
    }
    snprintf(w->path, need, "%s/%s/%s%s%s", w->temp_dir, split_names[split], class_name,
             file ? "/" : "", file ? file : "");
    return w->path;
}

static int files_write_image(Store *s, int split, const uint8_t *pixels, ImageShape shape,
                             int32_t label)
{
    FilesWriter *w = s->impl;
    const char *class_name = s->info.class_names[label];
    if (!w->class_made[split][label]) {
        const char *dir = writer_path(w, split, class_name, NULL);
        if (!dir || make_folder(dir) < 0)
            return -1;
        w->class_made[split][label] = 1;
    }
    char file[48];
    snprintf(file, sizeof file, "%0*lld.png", w->index_width[split],
             (long long)s->written[split]);
    const char *path = writer_path(w, split, class_name, file);
    if (path && w->encoder_count > 0)
        return encoders_queue(w, path, pixels, shape, split, s->written[split]);
    if (!path || codec_png_write_file(path, pixels, shape) < 0)
        return imgset_fail_prefix("%s: %s image %lld: ", s->uri, split_names[split],
                                  (long long)s->written[split]);
    return 0;
}

static int files_commit(Store *s)
{
    FilesWriter *w = s->impl;
    encoders_stop(w, 0);   /* every queued PNG written, or the first failure kept */
    if (w->error[0])
        return imgset_fail("%s", w->error);
    if (classes_write(w->temp_dir, &s->info) < 0)
        return -1;
    struct stat st;
    if (lstat(w->final_dir, &st) == 0)
        return imgset_fail("%s: %s already exists", s->uri, w->final_dir);
    if (rename(w->temp_dir, w->final_dir) < 0)
        return imgset_fail("%s: cannot rename %s to %s: %s", s->uri, w->temp_dir,
                           w->final_dir, strerror(errno));
    writer_free(s);
    return 0;
}

const StoreOps store_files_ops = {
    .scheme = "files",
    .alias = NULL,
    .summary = "files:DIR — ImageFolder tree DIR/{train,test}/<class>/<n>.png (PNG/JPEG read)",
    .open = files_open,
    .image_shape = files_image_shape,
    .read_image = files_read_image,
    .close = files_close,
    .create = files_create,
    .write_image = files_write_image,
    .commit = files_commit,
    .abort = files_abort,
};

/* ---- the ImageFolder importer -------------------------------------------------------- */

static int imagefolder_store_open(Store *s, const char *location)
{
    ScanOptions options = {1, 0.0, 0};
    if (s->open_arg)
        options = *(const ScanOptions *)s->open_arg;
    return open_with_options(s, location, &options);
}

static const StoreOps imagefolder_ops = {
    .scheme = "imagefolder",
    .summary = "ImageFolder / Tiny ImageNet tree (import only)",
    .open = imagefolder_store_open,
    .image_shape = files_image_shape,
    .read_image = files_read_image,
    .close = files_close,
};

Store *imagefolder_open(const char *dir, double heldout_fraction, uint64_t seed)
{
    ScanOptions options = {1, heldout_fraction, seed};
    char *name;
    if (asprintf(&name, "imagefolder:%s", dir) < 0)
        return imgset_fail("out of memory"), NULL;
    Store *s = store_open_with(&imagefolder_ops, name, dir, &options);
    free(name);
    return s;
}
