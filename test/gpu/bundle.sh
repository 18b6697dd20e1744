#!/usr/bin/env bash
# bundle.sh — run HERE before a device call: the device machine's image has CUDA but none of
# our Debian libraries (libpng, libjpeg, OpenBLAS, HDF5, libpq, ...) and no network to install
# them. This builds the CLI and the GPU test programs and packs them with every shared library
# they load — except glibc's, the C++ runtime's and CUDA's, which the device has (newer) —
# into build/gpu-bundle.tar.gz (~20 MB; gzip: every image has it). Name that path in the call's `carry`: test/gpu/run.sh
# unpacks it and uses it when it cannot build there. Prints the bundle's size and commit.
# With the Python package built (build/python), it also packs the package (for a python of the
# same version there) and libimgset.a with pgserver.o (to build the extension for another one).
set -euo pipefail
cd "$(dirname "$0")/../.."
bins=(build/imgset build/test/test_gpu build/test/test_gpu_train)
make -j"$(nproc)" "${bins[@]}" >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/gpu-bundle/bin" "$tmp/gpu-bundle/lib"
cp "${bins[@]}" "$tmp/gpu-bundle/bin/"
module=$(ls build/python/imgset/_imgset*.so 2>/dev/null | head -1)
if [ -n "$module" ]; then
    make -j"$(nproc)" build/libimgset.a "$module" >/dev/null
    mkdir -p "$tmp/gpu-bundle/python" "$tmp/gpu-bundle/static"
    cp -r build/python/imgset "$tmp/gpu-bundle/python/"
    rm -rf "$tmp/gpu-bundle/python/imgset/__pycache__"
    cp build/libimgset.a "$tmp/gpu-bundle/static/"
    cp build/obj/trainer/cli/pgserver.o "$tmp/gpu-bundle/static/" 2>/dev/null || true
    bins+=("$module")
fi
if ldd "${bins[@]}" | grep -q 'not found'; then
    ldd "${bins[@]}" | grep 'not found' | sort -u
    echo "bundle.sh: libraries missing here" >&2
    exit 1
fi
ldd "${bins[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
    grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt)\.so[^/]*$' |
    while read -r lib; do cp -L "$lib" "$tmp/gpu-bundle/lib/"; done
{ git rev-parse HEAD; git status --porcelain | grep -q . && echo "(with uncommitted changes)"; } \
    >"$tmp/gpu-bundle/commit" || true
tar czf build/gpu-bundle.tar.gz -C "$tmp" gpu-bundle
echo "build/gpu-bundle.tar.gz: $(du -h build/gpu-bundle.tar.gz | cut -f1), $(ls "$tmp/gpu-bundle/lib" | wc -l) libraries, commit $(head -1 "$tmp/gpu-bundle/commit")"
