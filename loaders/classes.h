/* classes.h — classes.txt, the class names of the files and mmap stores: one name per line,
 * line i naming label i. One reader and one writer, so that both stores (and numpy, h5py or
 * torchvision users reading the file themselves) agree on what a valid file is. */
#ifndef IMGSET_CLASSES_H
#define IMGSET_CLASSES_H

#include "dataset.h"

#define CLASSES_FILE "classes.txt"
#define CLASS_NAME_MAX 255          /* bytes of one class name */

/*
 * The rules: UTF-8 text, each name ended by "\n" (or "\r\n"; the last line may lack it),
 * a name is 1..CLASS_NAME_MAX bytes without NUL, "\r" or "\n", blank lines only after the
 * last name, 1..IMGSET_MAX_CLASSES names. Names may repeat only where a store allows it (the
 * files store, whose classes are folders, refuses repeats itself).
 */

/* 1 when name may stand on a line of classes.txt. */
int class_name_storable(const char *name);

/* Read DIR/classes.txt into info's class names (replacing them): 0, 1 when DIR has no such
 * file (info untouched), or -1 with imgset_fail() naming the file and the line. */
int classes_read(const char *dir, DatasetInfo *info);

/* Write DIR/classes.txt from info's class names: 0, or -1 with imgset_fail() naming the file,
 * or the class whose name cannot stand on a line (its label). */
int classes_write(const char *dir, const DatasetInfo *info);

#endif
