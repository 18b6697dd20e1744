#!/usr/bin/env bash
# deps.sh — install the Debian packages pg_imgset needs that are missing (idempotent, quiet
# when everything is there). Run by `make check` and `make demo`; needs root to install.
set -euo pipefail

packages=(
    build-essential pkg-config clang libclang-rt-14-dev
    zlib1g-dev libpng-dev libjpeg62-turbo-dev libxxhash-dev libopenblas-dev libhdf5-dev
    libdeflate-dev
    postgresql-15 postgresql-server-dev-15 libpq-dev postgresql-15-pgtap
    libtap-parser-sourcehandler-pgtap-perl
    python3-numpy python3-h5py python3-torchvision python3-psycopg2 python3-psycopg
    python3-dev python3-venv python3-pip python3-setuptools python3-wheel
    gnuplot-nox dataset-fashion-mnist
    openmpi-bin libopenmpi-dev
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages and not root; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
