#!/usr/bin/env bash
# test_import.sh — imgset import from the CLI: cifar10 (binary batches), idx (plain and gzip'd)
# and imagefolder (train/test folders, and one folder per class with a held-out fraction), each
# from small files this test writes with numpy and PIL; the store it makes is read back with
# numpy and compared with what was written, value for value. Bad input: a clear error, no store.
set -u
. "$(dirname "$0")/tap.sh"
cd "$SCRATCH"

# The fixtures: random pixels and labels from a fixed seed, kept as .npy for the comparisons.
"$PYTHON" - <<'EOF'
import gzip, os, struct
import numpy as np
from PIL import Image

rng = np.random.default_rng(7)
# cifar10: 5 train batches of 2 records + a test batch of 3; a record is a label byte and the
# 32x32 image as three planes (R, G, B).
os.makedirs("cifar", exist_ok=True)
names = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
open("cifar/batches.meta.txt", "w").write("\n".join(names) + "\n\n")
def cifar_batch(path, n):
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    with open(path, "wb") as f:
        for label, image in zip(labels, images):
            f.write(bytes([label]) + image.transpose(2, 0, 1).tobytes())
    return images, labels
parts = [cifar_batch("cifar/data_batch_%d.bin" % b, 2) for b in range(1, 6)]
np.save("cifar_train_images.npy", np.concatenate([p[0] for p in parts]))
np.save("cifar_train_labels.npy", np.concatenate([p[1] for p in parts]))
images, labels = cifar_batch("cifar/test_batch.bin", 3)
np.save("cifar_test_images.npy", images)
np.save("cifar_test_labels.npy", labels)

# idx: 6 train and 4 test images of 5x7, labels up to 9; the test pair gzip'd.
def idx(path, array, opener=open):
    with opener(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.tobytes())
for split, n, opener, suffix in (("train", 6, open, ""), ("test", 4, gzip.open, ".gz")):
    images = rng.integers(0, 256, (n, 5, 7), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    labels[0] = 9                       # classes "0".."9"
    idx("%s-images%s" % (split, suffix), images, opener)
    idx("%s-labels%s" % (split, suffix), labels, opener)
    np.save("idx_%s_images.npy" % split, images[..., None])
    np.save("idx_%s_labels.npy" % split, labels)

# imagefolder: tree/{train,test}/<class>/<n>.png, RGB 6x4; flat/<class>/<n>.png for held-out.
classes = ["ant", "bee", "cow"]
for root, splits in (("tree", ("train", "test")), ("flat", ("",))):
    for split in splits:
        images, labels = [], []
        for label, name in enumerate(classes):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(4 if split == "test" else 5):
                image = rng.integers(0, 256, (6, 4, 3), dtype=np.uint8)
                Image.fromarray(image).save(os.path.join(folder, "%02d.png" % i))
                images.append(image)
                labels.append(label)
        if root == "tree":                # torchvision's order: sorted classes, sorted files
            np.save("tree_%s_images.npy" % split, np.stack(images))
            np.save("tree_%s_labels.npy" % split, np.array(labels))
EOF

# same_as PREFIX STORE-DIR — the mmap store's splits and classes equal the fixture's .npy files.
same_as() {
    "$PYTHON" - "$@" <<'EOF'
import sys
import numpy as np
prefix, store = sys.argv[1:3]
for split in ("train", "test"):
    want_images = np.load("%s_%s_images.npy" % (prefix, split))
    want_labels = np.load("%s_%s_labels.npy" % (prefix, split))
    images = np.load("%s/%s_images.npy" % (store, split))
    labels = np.load("%s/%s_labels.npy" % (store, split))
    assert images.shape == want_images.shape, (split, images.shape, want_images.shape)
    assert (images == want_images).all(), (split, "pixels differ")
    assert (labels.astype(np.int64) == want_labels.astype(np.int64)).all(), (split, labels)
EOF
}
classes_are() { [ "$(tr '\n' ' ' <"$1/classes.txt")" = "$2" ]; }

ok "import cifar10 from 6 binary batches" "$IMGSET" import cifar10 cifar --out mmap:c10
ok "  10 train, 3 test images, pixels and labels as written" same_as cifar c10
ok "  class names from batches.meta.txt" classes_are c10 "plane car bird cat deer dog frog horse ship truck "

ok "import idx: a plain train pair, a gzip'd test pair" \
    "$IMGSET" import idx train-images train-labels test-images.gz test-labels.gz --out mmap:ix
ok "  6 train, 4 test images of 5x7x1, pixels and labels as written" same_as idx ix
ok "  classes \"0\"..\"9\"" classes_are ix "0 1 2 3 4 5 6 7 8 9 "

ok "import imagefolder: train/ and test/ folders of PNGs" \
    "$IMGSET" import imagefolder tree --out mmap:tf
ok "  15 train, 12 test images in torchvision's order, pixels and labels as written" \
    same_as tree tf
ok "  classes from the folder names, sorted" classes_are tf "ant bee cow "

ok "import imagefolder: one folder per class, a quarter held out" \
    "$IMGSET" import imagefolder flat --heldout 0.25 --seed 3 --out mmap:hf
ok "  the held-out quarter of each class is the test split (12 train, 3 test)" bash -c "
    '$IMGSET' info mmap:hf | grep -q 'train .*12 images' && '$IMGSET' info mmap:hf | grep -q 'test .*3 images'"
ok "  the same seed holds out the same images, another seed others" bash -c "
    '$IMGSET' import imagefolder flat --heldout 0.25 --seed 3 --out mmap:hf2 >/dev/null &&
    '$IMGSET' import imagefolder flat --heldout 0.25 --seed 4 --out mmap:hf3 >/dev/null &&
    '$IMGSET' verify mmap:hf mmap:hf2 >/dev/null && ! '$IMGSET' verify mmap:hf mmap:hf3 >/dev/null"

# Bad input: the error names what is wrong, and nothing is left at the destination.
head -c 3000 cifar/data_batch_2.bin >cut.bin && mkdir -p cut && cp cifar/* cut/ && mv cut.bin cut/data_batch_2.bin
fails_with "a cut cifar10 batch is named" "data_batch_2.bin" "$IMGSET" import cifar10 cut --out mmap:bad1
ok "  and leaves no store" test ! -e bad1
fails_with "idx images without labels of the same count are named" \
    "test-images.gz has 4 images, train-labels has 6" \
    "$IMGSET" import idx train-images train-labels test-images.gz train-labels --out mmap:bad2
usage_error "import with an unknown format is a usage error naming it" 'unknown format "nosuch"' \
    "$IMGSET" import nosuch x --out mmap:bad3
usage_error "import idx with three paths is a usage error" "idx: wrong number of paths" \
    "$IMGSET" import idx train-images train-labels test-images.gz --out mmap:bad5
fails_with "a missing folder is named" "absent" "$IMGSET" import imagefolder absent --out mmap:bad4
tap_done
