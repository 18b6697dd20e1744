/* store_files.h — the files: store (ImageFolder trees of PNG/JPEG) and the ImageFolder importer. */
#ifndef IMGSET_STORE_FILES_H
#define IMGSET_STORE_FILES_H

#include <stdint.h>

#include "store.h"

/*
 * files:DIR — one image file per image:
 *   DIR/classes.txt                 class names in label order, one per line
 *   DIR/{train,test}/<class>/<n>.png   <n> = the image's index in its split, zero-padded to
 *                                      one width per split so the names sort in split order
 * torchvision's ImageFolder(DIR/train) reads what this writes (same labels when the class
 * names sort in label order, as generated names do).
 *
 * Writing: under DIR.tmp-<pid>, renamed to DIR at commit; an existing DIR is refused. Class
 * names become folder names: an empty name, one with '/', a newline or a leading '.' is an
 * error, as are two equal names. A class folder is made when its first image is written.
 *
 * Reading accepts any ImageFolder tree DIR/{train,test}/<class>/... of PNG and JPEG files
 * (.png/.jpg/.jpeg in any case; the format is taken from the content). Files in class
 * subfolders count, in torchvision's order (folders by path, names sorted within); names
 * starting with '.' are skipped; any other file is an error. Labels: DIR/classes.txt when
 * present (every class folder must be listed there), else the sorted train folder names.
 * Order: when a split's files are all named <integer>.png with integers exactly 0..N-1
 * (this store's own layout), that order; otherwise torchvision's (class folders sorted by
 * name, files by name within). Every header is probed at open: a split whose images share
 * one size is fixed-shape; images are 1 channel when every image in the store is grey,
 * else all are converted to 3 (RGB). An empty split, an empty class folder, a file that is
 * not a PNG/JPEG or a corrupt image is an error naming the file (and, on read, the index).
 */
extern const StoreOps store_files_ops;

/*
 * Open a real-world ImageFolder tree for `imgset import imagefolder DIR` (read like files:,
 * name "imagefolder:DIR" in messages). Layouts, tried in this order:
 *   Tiny ImageNet: DIR/train/<wnid>/images/ and DIR/val/images/, labelled by
 *                  DIR/val/val_annotations.txt (file name, tab, wnid); val is the test split
 *   split tree:    DIR/train/<class>/ with DIR/test/<class>/ (or DIR/val/<class>/)
 *   flat tree:     DIR/<class>/ — a seeded heldout_fraction (0..1) of each class's files
 *                  (rounded) becomes the test split; the same seed picks the same files
 * Returns a reader to free with store_close(), or NULL with imgset_fail().
 */
Store *imagefolder_open(const char *dir, double heldout_fraction, uint64_t seed);

#endif
