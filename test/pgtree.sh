#!/usr/bin/env bash
# pgtree.sh — a private PostgreSQL installation for the tests, holding the extension just built.
#
#   test/pgtree.sh DEST     (re)make DEST; prints its server bindir on stdout
#
# The tests must run the pg_imgset of this checkout, never whatever another checkout or an
# earlier `make install` left in the system's directories, and must not need root to do so.
# PostgreSQL finds its share and library folders relative to its own binary (a relocatable
# install, as pg_regress's temp-install uses), so DEST holds copies of the server binaries,
# links to every other file of the system installation, and the extension installed with
# `make -C extension install DESTDIR=DEST`. The system installation is left untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-pg_config}
dest=${1:?usage: pgtree.sh DEST}
bindir=$("$PG_CONFIG" --bindir)
libdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
rm -rf "$dest.new"
mkdir -p "$dest.new$bindir" "$dest.new$libdir" "$dest.new$sharedir"

# Binaries are copied: a server started through a link would resolve it back to the system's
# folders. The clients (psql, pg_dump, …) are not needed here: the tests use the system's.
for b in postgres initdb pg_ctl pg_basebackup pg_controldata; do
    if [ -x "$bindir/$b" ]; then cp -p "$bindir/$b" "$dest.new$bindir/"; fi
done
ln -s postgres "$dest.new$bindir/postmaster"
# link_entries SRC DST — link each entry of SRC into DST but the extension's own files; a
# folder the extension's install writes into (bitcode/, extension/) is made real, one level.
link_entries() {
    local f name
    for f in "$1"/*; do
        name=$(basename "$f")
        case $name in
        pg_imgset*) ;;
        bitcode|extension) mkdir -p "$2/$name"; link_entries "$f" "$2/$name" ;;
        *) ln -s "$f" "$2/" ;;
        esac
    done
}
link_entries "$libdir" "$dest.new$libdir"
link_entries "$sharedir" "$dest.new$sharedir"
make -s -C extension PG_CONFIG="$PG_CONFIG" install DESTDIR="$dest.new" >/dev/null

rm -rf "$dest"
mv "$dest.new" "$dest"
echo "$dest$bindir"
