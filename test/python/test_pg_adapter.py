"""test_pg_adapter.py — imgset.pg on a throwaway cluster: numpy arrays in and out of imgtensor.

psycopg 3 in text and binary (parameters, results, COPY binary and text), psycopg2 in text;
random arrays round trip bit for bit, NULLs, imgtensor[], what the server holds checked through
bytea and integer[] (not only through the adapter itself), values the server computed (crop,
resize, to_float, compression) against numpy, and bad values: refused in Python before sending,
or the driver's error with the server's message and SQLSTATE, the backend still alive.
Prints TAP. Run with Debian's python: /usr/bin/python3 test/python/test_pg_adapter.py
"""
import io
import os
import shlex
import subprocess
import sys
import traceback
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "interop"))
import tap  # noqa: E402  (the project's TAP helpers)

try:
    import numpy as np
except ImportError:
    tap.skip_all("imgset.pg adapters", "numpy not installed (apt-get install python3-numpy)")
sys.path.insert(0, os.path.join(ROOT, "test", "python"))
import support  # noqa: E402  (the package built into build/python, or a failure saying why)

support.import_imgset("test_pg_adapter.py")
import imgset.pg as pg  # noqa: E402

F32 = np.float32
RNG = np.random.default_rng(12)
PGCLUSTER = os.path.join(ROOT, "test", "pgcluster.sh")
MISMATCH = "imgtensor shape 1x1x1 does not match imgtensor(6,5,3)"


def random_image(shape, dtype):
    """Random pixels; float32 ones are random bit patterns (NaNs, infinities, denormals too)."""
    if dtype == np.uint8:
        return RNG.integers(0, 256, shape, dtype=np.uint8)
    return RNG.integers(0, 2**32, shape, dtype=np.uint32).view(np.float32)


def bits(arr):
    """The array's elements as integers, so NaN payloads compare too."""
    return arr.view(np.uint8 if arr.dtype.itemsize == 1 else np.uint32)


def as_hwc(arr):
    """arr with the channel axis an (H, W) array is given."""
    return arr.reshape(arr.shape + (1,)) if arr.ndim == 2 else arr


def same(got, want):
    """got is a native (H, W, C) array with want's pixels, bit for bit."""
    want = as_hwc(want).astype(want.dtype.newbyteorder("="))
    return (isinstance(got, np.ndarray) and got.shape == want.shape
            and got.dtype == want.dtype and got.dtype.isnative
            and np.array_equal(bits(got), bits(want)))


def samples():
    """(what, array) pairs: both dtypes, 2-D, odd strides and byte orders, a TOASTed size."""
    f = random_image((4, 7, 4), np.float32)
    return [("uint8 6x5x3", random_image((6, 5, 3), np.uint8)),
            ("float32 4x7x4 (random bits)", f),
            ("uint8 1x1x1", random_image((1, 1, 1), np.uint8)),
            ("uint8 (H, W) array", random_image((3, 9), np.uint8)),
            ("uint8 transposed view",
             np.transpose(random_image((3, 8, 5), np.uint8), (1, 2, 0))),
            ("float32 strided view", f[::2, ::-3]),
            ("float32 Fortran order", np.asfortranarray(random_image((5, 6, 2), np.float32))),
            ("big-endian float32", random_image((2, 3, 1), np.float32).astype(">f4")),
            ("uint8 224x224x3 (stored out of line)", random_image((224, 224, 3), np.uint8))]


def raises(fn, exc, *words):
    """The exception exc that fn() raised with every word in its message, else None."""
    try:
        fn()
    except exc as e:
        return e if all(w in str(e) for w in words) else None
    except Exception:  # noqa: BLE001 - any other exception fails the check
        return None
    return None


# ---- the wire formats, no server ----

def test_wire_formats():
    one = np.array([[[1.0]]], dtype=np.float32)
    tap.ok(pg.to_text(one) == "float32:1x1x1:0000803f", "to_text: float32 1.0 is 0000803f")
    tap.ok(same(pg.from_text(" uint8:2x2x3:000102030405060708090A0B\n"),
                np.arange(12, dtype=np.uint8).reshape(2, 2, 3)),
           "from_text: upper-case hex and surrounding white space, as the server accepts")
    header = bytes(pg.to_binary(np.zeros((2, 3), np.uint8)))[:20]
    tap.ok(header == bytes.fromhex("49010100" "00000002" "00000003" "00000001" "00000000"),
           "to_binary: the 20-byte header of a uint8 (2, 3) array")
    for what, arr in samples():
        tap.ok(same(pg.from_text(pg.to_text(arr)), arr)
               and same(pg.from_binary(pg.to_binary(arr)), arr),
               "text and binary forms round trip: %s" % what)
    got = pg.from_binary(pg.to_binary(samples()[0][1]))
    tap.ok(got.flags.writeable and got.flags.c_contiguous,
           "decoded arrays are writable and C-contiguous")

    for bad, words in [(np.zeros((2, 2, 3)), ("float64", "(2, 2, 3)", "uint8 or float32")),
                       (np.zeros((2, 2), np.int64), ("int64", "(2, 2)")),
                       (np.zeros((2, 2, 1), bool), ("bool",)),
                       (np.zeros((2, 2, 1), np.uint16), ("uint16",)),
                       ([[1, 2]], ("list",))]:
        tap.ok(raises(lambda: pg.to_binary(bad), TypeError, *words)
               and raises(lambda: pg.to_text(bad), TypeError, *words),
               "refused with TypeError naming %s" % ", ".join(words))
    for shape, words in [((5,), ("(5,)", "(H, W, C) or (H, W)")),
                         ((1, 2, 3, 4), ("(1, 2, 3, 4)",)),
                         ((0, 3, 3), ("0x3x3", "out of range")), ((2, 2, 5), ("5 channels",)),
                         ((16385, 1, 1), ("16385x1x1",)), ((), ("()",))]:
        tap.ok(raises(lambda: pg.to_binary(np.zeros(shape, np.uint8)), ValueError, *words),
               "shape %s refused with ValueError naming it" % (shape,))
    huge = np.broadcast_to(np.float32(0), (16384, 16384, 4))  # 4 GB, none of it allocated
    tap.ok(raises(lambda: pg.to_binary(huge), ValueError, "16384x16384x4", "more than"),
           "an array over 1 GB of pixels is refused")

    good = bytes(pg.to_binary(np.zeros((1, 2, 1), np.uint8)))

    def patched(offset, value):
        return good[:offset] + bytes([value]) + good[offset + 1:]
    for data, words in [(good[:19], ("shorter",)), (patched(0, 0x48), ("magic",)),
                        (patched(1, 2), ("version",)), (patched(2, 3), ("dtype code 3",)),
                        (patched(3, 1), ("zlib-compressed", "decompressed")),
                        (patched(19, 1), ("reserved",)),
                        (good + b"\0", ("expected 2 bytes", "got 3")),
                        (patched(7, 0), ("0x2x1", "out of range"))]:
        tap.ok(raises(lambda: pg.from_binary(data), ValueError, *words),
               "from_binary refuses a bad value naming %s" % ", ".join(words))
    for text, words in [("uint16:1x1x1:00", ("DTYPE:HxWxC:HEX",)), ("uint8:1x1:00", ("DTYPE",)),
                        ("uint8:1x1x1:0", ("expected 2 hex digits", "got 1")),
                        ("uint8:1x1x1:0g", ("not hex",)), ("uint8:1x2x1:00", ("expected 4",)),
                        ("uint8:1x1x5:00", ("5 channels",)), ("uint8:1x1x1:00 00", ("got 5",))]:
        tap.ok(raises(lambda: pg.from_text(text), ValueError, *words),
               "from_text refuses %r naming %s" % (text, ", ".join(words)))


def test_driver_choice():
    tap.ok(raises(lambda: pg.register(object()), TypeError, "psycopg 3 or psycopg2",
                  "builtins.object"), "register() of something else: TypeError naming what it got")
    # A Python where neither driver can be imported still imports imgset.pg, and says so.
    script = ("import sys; sys.modules['psycopg'] = None; sys.modules['psycopg2'] = None\n"
              "import imgset.pg as pg\n"
              "try: pg.register(object())\n"
              "except TypeError as e: print(e)\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pg.__file__)))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=60).stdout
    tap.ok("psycopg 3 is not installed: apt-get install python3-psycopg" in out
           and "psycopg2 is not installed: apt-get install python3-psycopg2" in out,
           "without either driver: imgset.pg imports and register() names both missing packages")


# ---- a throwaway cluster ----

@contextmanager
def cluster():
    """A started cluster, PG* set for libpq, with databases psycopg3 and psycopg2 (one per
    driver, so one's leftovers cannot disturb the other) holding pg_imgset, and one without."""
    if not os.environ.get("IMGSET_PG_BINDIR"):
        os.environ["IMGSET_PG_BINDIR"] = subprocess.run(
            [os.path.join(ROOT, "test", "pgtree.sh"), os.path.join(ROOT, "build", "pg")],
            check=True, capture_output=True, text=True).stdout.strip()
    start = subprocess.run([PGCLUSTER, "start"], capture_output=True, text=True)
    if start.returncode != 0:
        raise RuntimeError("pgcluster start failed: " + start.stderr[-2000:])
    directory = start.stdout.strip()
    try:
        exports = subprocess.run([PGCLUSTER, "env", directory], check=True,
                                 capture_output=True, text=True).stdout
        os.environ.update(kv.split("=", 1) for kv in shlex.split(exports)[1:])
        for db in ("psycopg3", "psycopg2", "without_extension"):
            subprocess.run(["psql", "-q", "-c", "CREATE DATABASE " + db], check=True)
        for db in ("psycopg3", "psycopg2"):
            subprocess.run(["psql", "-q", "-d", db, "-c", "CREATE EXTENSION pg_imgset"], check=True)
        yield directory
    finally:
        subprocess.run([PGCLUSTER, "stop", directory], capture_output=True)


def resize_like_server(src, dh, dw):
    """Bilinear resize of a uint8 (H, W, C) with half-pixel centres, in float32 arithmetic."""
    def axis(dst, size):
        f = (np.arange(dst, dtype=F32) + F32(0.5)) * (F32(size) / F32(dst)) - F32(0.5)
        f = np.maximum(f, F32(0))
        i0 = np.minimum(f.astype(np.int32), size - 1)
        return i0, np.minimum(i0 + 1, size - 1), f - i0.astype(F32)
    y0, y1, wy = axis(dh, src.shape[0])
    x0, x1, wx = axis(dw, src.shape[1])
    s = src.astype(F32)
    wx = wx[None, :, None]
    top = s[y0][:, x0] + wx * (s[y0][:, x1] - s[y0][:, x0])
    bot = s[y1][:, x0] + wx * (s[y1][:, x1] - s[y1][:, x0])
    return (top + wy[:, None, None] * (bot - top) + F32(0.5)).astype(np.uint8)


def center_crop(a, h, w):
    """The centred h x w window, offsets rounded down."""
    top, left = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    return a[top:top + h, left:left + w]


def server_ops():
    """(SQL of a function over %s, numpy of the same) for values the server computes."""
    mean, std = np.array([0.5, 0.25, 0.125], F32), np.array([0.25, 0.5, 0.75], F32)
    return [("center_crop(%s, 7, 5)", lambda a: center_crop(a, 7, 5)),
            ("resize(%s, 11, 6)", lambda a: resize_like_server(a, 11, 6)),
            ("resize(%s, 40, 33)", lambda a: resize_like_server(a, 40, 33)),
            ("to_float(%s, '{0.5,0.25,0.125}', '{0.25,0.5,0.75}')",
             lambda a: (a.astype(F32) * (F32(1) / F32(255)) - mean) / std)]


def payload_matches(row, arr):
    """A row of Driver.server_holds shows arr's shape, dtype, little-endian payload, a pixel."""
    _, h, w, c, dtype, payload, pixel = row
    a3 = as_hwc(arr)
    wire = "u1" if dtype == "uint8" else "<f4"
    return ((h, w, c) == a3.shape and dtype == ("uint8" if a3.dtype.itemsize == 1 else "float32")
            and bytes(payload) == np.ascontiguousarray(a3, dtype=wire).tobytes()
            and (pixel == a3[1, 2, 0] if dtype == "uint8" and h >= 2 and w >= 3
                 else pixel is None))


class Driver:
    """One registered connection (autocommit) and the ways it sends and receives imgtensor."""

    def __init__(self, name, errors, conn, params, results):
        self.name, self.errors, self.conn = name, errors, conn
        self.params = params    # placeholders that send an array: text and/or binary
        self.results = results  # result formats: False = text, True = binary

    def fetch(self, sql, args=(), binary=False):
        """All rows of a query."""
        raise NotImplementedError

    def executemany(self, sql, rows):
        raise NotImplementedError

    def sqlstate(self, error):
        raise NotImplementedError

    def backend_pid(self):
        return self.conn.info.backend_pid

    def server_holds(self, table):
        """What the server holds, read without the adapter: shape, dtype, payload, one pixel."""
        return self.fetch("SELECT id, imgset.height(img), imgset.width(img), "
                          "imgset.channels(img), imgset.dtype(img), img::bytea, "
                          "CASE WHEN imgset.dtype(img) = 'uint8' "
                          "THEN (img::integer[])[2][3][1] END FROM %s ORDER BY id" % table)

    def formats(self):
        """(placeholder, binary result, words) for every way of sending and receiving."""
        return [(p, b, "%s, %s result" % (p, "binary" if b else "text"))
                for p in self.params for b in self.results]


class Psycopg3(Driver):
    def __init__(self, conn):
        import psycopg
        super().__init__("psycopg 3", psycopg.errors, conn, ("%t", "%b"), (False, True))

    def fetch(self, sql, args=(), binary=False):
        cur = self.conn.execute(sql, args, binary=binary)
        return cur.fetchall() if cur.description else []

    def executemany(self, sql, rows):
        with self.conn.cursor() as cur:
            cur.executemany(sql, rows)

    def sqlstate(self, error):
        return error.sqlstate


class Psycopg2(Driver):
    def __init__(self, conn):
        import psycopg2.errors
        super().__init__("psycopg2", psycopg2.errors, conn, ("%s",), (False,))
        self.cur = conn.cursor()

    def fetch(self, sql, args=(), binary=False):
        self.cur.execute(sql, args)
        return self.cur.fetchall() if self.cur.description else []

    def executemany(self, sql, rows):
        self.cur.executemany(sql, rows)

    def sqlstate(self, error):
        return error.pgcode


def test_both_drivers(d):
    """What either driver does the same way: every format it has, both directions."""
    n = d.name
    for what, arr in samples():
        tap.ok(all(same(d.fetch("SELECT " + p, [arr], b)[0][0], arr) for p, b, _ in d.formats()),
               "%s: %s round trips bit for bit (%s)"
               % (n, what, "; ".join(w for _, _, w in d.formats())))
    d.fetch("CREATE TABLE anyshape (id int, img imgset.imgtensor)")
    arrays = [a for _, a in samples()]
    for p in d.params:
        d.executemany("INSERT INTO anyshape VALUES (%%s, %s)" % p, list(enumerate(arrays)))
        rows = d.server_holds("anyshape")
        tap.ok(len(rows) == len(arrays)
               and all(payload_matches(r, arrays[r[0]]) for r in rows),
               "%s: every array sent as %s is what the server holds (shape, dtype, payload "
               "bytes, a pixel)" % (n, p))
        d.fetch("TRUNCATE anyshape")

    tap.ok(all(d.fetch("SELECT %s::imgset.imgtensor", [None], b) == [(None,)]
               and d.fetch("SELECT NULL::imgset.imgtensor", (), b) == [(None,)]
               for b in d.results), "%s: NULL both ways" % n)
    imgs = [random_image((2, 3, 3), np.uint8), None, random_image((5, 1, 2), np.float32)]
    for p, b, words in d.formats():
        typ, got = d.fetch("SELECT pg_typeof(%s)::text, %s" % (p, p), [imgs, imgs], b)[0]
        tap.ok(typ == "imgset.imgtensor[]" and len(got) == 3 and got[1] is None
               and same(got[0], imgs[0]) and same(got[2], imgs[2]),
               "%s: a list of arrays with a NULL is an imgtensor[], and comes back (%s)"
               % (n, words))

    d.fetch("CREATE TABLE typed (id int, img imgset.imgtensor(6,5,3))")
    rows = [(i, random_image((6, 5, 3), np.uint8)) for i in range(4)]
    d.executemany("INSERT INTO typed VALUES (%s, %s)", rows)
    back = d.fetch("SELECT id, img FROM typed ORDER BY id")
    tap.ok(len(back) == 4 and all(same(g[1], a) for g, (_, a) in zip(back, rows))
           and all(payload_matches(r, a) for r, (_, a) in zip(d.server_holds("typed"), rows)),
           "%s: rows of an imgtensor(6,5,3) column in and out" % n)

    src = random_image((13, 10, 3), np.uint8)
    for sql, fn in server_ops():
        want = fn(src)
        tap.ok(all(same(d.fetch("SELECT imgset." + sql, [src], b)[0][0], want)
                   for b in d.results), "%s: %s equals numpy's, bit for bit" % (n, sql % "img"))
    smooth = np.repeat(np.arange(64, dtype=np.uint8), 48).reshape(32, 32, 3)
    for b in d.results:
        codec, got = d.fetch("SELECT imgset.codec(c), c FROM (SELECT "
                             "imgset.imgset_compress(%s, 'zlib') c) s", [smooth], b)[0]
        tap.ok(codec == "zlib" and same(got, smooth),
               "%s: a zlib-compressed value arrives decompressed (%s result)"
               % (n, "binary" if b else "text"))

    pid = d.backend_pid()
    tap.ok(raises(lambda: d.fetch("SELECT %s", [np.zeros((2, 2, 3))]), TypeError,
                  "float64", "(2, 2, 3)"),
           "%s: a float64 array is refused before sending (TypeError naming it)" % n)
    for p in d.params:
        e = raises(lambda: d.fetch("INSERT INTO typed VALUES (1, %s)" % p,
                                   [np.zeros((1, 1, 1), np.uint8)]),
                   d.errors.DataException, MISMATCH)
        tap.ok(e and d.sqlstate(e) == "22000",
               "%s: a 1x1x1 array (%s) into imgtensor(6,5,3): DataException 22000, the "
               "server's message" % (n, p))
    e = raises(lambda: d.fetch("SELECT %s::imgset.imgtensor", ["uint8:1x1x1:0g"]),
               d.errors.InvalidTextRepresentation, "invalid input syntax for type imgtensor")
    tap.ok(e and d.sqlstate(e) == "22P02", "%s: a malformed literal: 22P02 from the server" % n)
    tap.ok(d.backend_pid() == pid and d.fetch("SELECT 1") == [(1,)],
           "%s: after the errors the same backend answers (nothing crashed)" % n)


def test_psycopg3():
    """psycopg 3 on its own: registration, binary by default, COPY, bad binary values."""
    import psycopg
    from psycopg.adapt import Dumper, PyFormat
    from psycopg.pq import Format
    from psycopg.rows import dict_row

    with psycopg.connect(dbname="without_extension", autocommit=True) as other:
        tap.ok(raises(lambda: pg.register(other), psycopg.ProgrammingError,
                      "CREATE EXTENSION pg_imgset"),
               "psycopg 3: register() where the extension is missing: ProgrammingError saying so")
    conn = psycopg.connect(dbname="psycopg3", autocommit=True)
    pg.register(conn)
    tap.ok(conn.adapters.get_dumper(np.ndarray, PyFormat.AUTO).format == Format.BINARY,
           "psycopg 3: %s sends numpy arrays in binary")
    literal = "SELECT 'uint8:1x1x1:07'::imgset.imgtensor"
    with psycopg.connect(dbname="psycopg3", autocommit=True) as plain:
        tap.ok(isinstance(plain.execute(literal).fetchone()[0], str),
               "psycopg 3: a connection never registered is untouched")
        with plain.cursor() as cur:
            pg.register(cur)
            tap.ok(same(cur.execute(literal).fetchone()[0], np.full((1, 1, 1), 7, np.uint8))
                   and isinstance(plain.execute(literal).fetchone()[0], str),
                   "psycopg 3: register(cursor) adapts that cursor only")
    with psycopg.connect(dbname="psycopg3", autocommit=True, row_factory=dict_row,
                         cursor_factory=psycopg.ClientCursor) as client:
        pg.register(client)
        arr = random_image((3, 2, 4), np.float32)
        row = client.execute("SELECT %s AS img", [arr]).fetchone()
        tap.ok(same(row["img"], arr),
               "psycopg 3: a dict_row connection with client-side binding (ClientCursor)")
    test_both_drivers(Psycopg3(conn))

    copied = [(i, random_image((6, 5, 3), np.uint8)) for i in range(10, 14)] + [(14, None)]
    for fmt in ("binary", "text"):
        conn.execute("TRUNCATE typed")
        with conn.cursor() as cur:
            with cur.copy("COPY typed (id, img) FROM STDIN (FORMAT %s)" % fmt) as cp:
                cp.set_types(["int4", "imgtensor"])
                for row in copied:
                    cp.write_row(row)
            with cur.copy("COPY typed (id, img) TO STDOUT (FORMAT %s)" % fmt) as cp:
                cp.set_types(["int4", "imgset.imgtensor"])
                back = sorted(cp.rows(), key=lambda r: r[0])
        held = Psycopg3(conn).server_holds("typed WHERE img IS NOT NULL")
        tap.ok(len(back) == 5 and back[4] == (14, None)
               and all(b[0] == i and same(b[1], a) for b, (i, a) in zip(back, copied[:4]))
               and all(payload_matches(r, a) for r, (_, a) in zip(held, copied)),
               "psycopg 3: COPY (FORMAT %s) in and out, NULL included, the server holding each "
               "array" % fmt)

    def copy_wrong_shape():
        with conn.cursor() as cur, cur.copy("COPY typed FROM STDIN (FORMAT binary)") as cp:
            cp.set_types(["int4", "imgtensor"])
            cp.write_row((1, np.zeros((1, 1, 1), np.uint8)))
    e = raises(copy_wrong_shape, psycopg.errors.DataException, MISMATCH)
    tap.ok(e and e.sqlstate == "22000",
           "psycopg 3: COPY binary of a wrong shape: the server's 22000")

    class Raw(bytes):
        """Bytes sent as a binary imgtensor as they are."""
    oid = conn.adapters.types["imgtensor"].oid
    conn.adapters.register_dumper(Raw, type("RawDumper", (Dumper,), {
        "format": Format.BINARY, "oid": oid, "dump": lambda self, obj: bytes(obj)}))
    good = bytes(pg.to_binary(np.zeros((1, 2, 1), np.uint8)))
    compressed = good[:3] + b"\1" + good[4:]
    for data, detail in [(compressed, "Expected codec 0"), (good[:-1], "has 2 bytes, not 1")]:
        e = raises(lambda: conn.execute("SELECT %b", [Raw(data)]),
                   psycopg.errors.InvalidBinaryRepresentation,
                   "invalid binary value for type imgtensor")
        tap.ok(e and e.sqlstate == "22P03" and detail in (e.diag.message_detail or ""),
               "psycopg 3: a malformed binary value: 22P03 from the server (%s)" % detail)
    # What the server never sends: a compressed header, handed to the loader as a bytea.
    with conn.cursor(binary=True) as cur:
        cur.adapters.register_loader("bytea", conn.adapters.get_loader(oid, Format.BINARY))
        e = raises(lambda: cur.execute("SELECT %s::bytea", [compressed]).fetchone(),
                   psycopg.DataError, "zlib-compressed", "decompressed")
    tap.ok(e and conn.execute("SELECT 1").fetchone() == (1,),
           "psycopg 3: a compressed binary value is refused by the loader with psycopg's "
           "DataError; the connection goes on")
    conn.close()


def test_psycopg2():
    """psycopg2 on its own: registration in a transaction, COPY text with to_text/from_text."""
    import psycopg2
    import psycopg2.extensions as ext

    other = psycopg2.connect(dbname="without_extension")
    tap.ok(raises(lambda: pg.register(other), psycopg2.ProgrammingError,
                  "CREATE EXTENSION pg_imgset"),
           "psycopg2: register() where the extension is missing: ProgrammingError saying so")
    other.close()
    conn = psycopg2.connect(dbname="psycopg2")
    pg.register(conn)
    tap.ok(conn.get_transaction_status() == ext.TRANSACTION_STATUS_IDLE,
           "psycopg2: register() leaves an idle connection idle")
    conn.autocommit = True
    literal = "SELECT 'uint8:1x1x1:07'::imgset.imgtensor"
    with psycopg2.connect(dbname="psycopg2") as plain, plain.cursor() as cur, \
            plain.cursor() as registered:
        pg.register(registered)
        cur.execute(literal)
        registered.execute(literal)
        tap.ok(isinstance(cur.fetchone()[0], str)
               and same(registered.fetchone()[0], np.full((1, 1, 1), 7, np.uint8)),
               "psycopg2: register(cursor) parses results on that cursor only")
    plain.close()
    d = Psycopg2(conn)
    test_both_drivers(d)

    copied = [(i, random_image((6, 5, 3), np.uint8)) for i in range(10, 13)]
    lines = "".join("%d\t%s\n" % (i, pg.to_text(a)) for i, a in copied) + "13\t\\N\n"
    d.cur.execute("TRUNCATE typed")
    d.cur.copy_expert("COPY typed FROM STDIN", io.StringIO(lines))
    out = io.StringIO()
    d.cur.copy_expert("COPY (SELECT id, img FROM typed ORDER BY id) TO STDOUT", out)
    got = [line.split("\t") for line in out.getvalue().splitlines()]
    tap.ok(len(got) == 4 and got[3] == ["13", "\\N"]
           and all(int(g[0]) == i and same(pg.from_text(g[1]), a)
                   for g, (i, a) in zip(got, copied)),
           "psycopg2: COPY text in and out with to_text / from_text")
    conn.close()


def main():
    test_wire_formats()
    test_driver_choice()
    if subprocess.run(["sh", "-c", "command -v pg_config"], capture_output=True).returncode:
        tap.skip("imgset.pg with a server", "no pg_config (install postgresql-server-dev-15)")
        tap.finish()
    try:
        with cluster():
            for name, module, test, package in (
                    ("psycopg 3", "psycopg", test_psycopg3, "python3-psycopg"),
                    ("psycopg2", "psycopg2", test_psycopg2, "python3-psycopg2")):
                try:
                    __import__(module)
                except ImportError:
                    tap.skip("imgset.pg with %s" % name,
                             "%s not installed (apt-get install %s)" % (name, package))
                    continue
                try:
                    test()
                except Exception:  # noqa: BLE001 - reported as a failed line, not a crash
                    tap.ok(False, "%s tests ran to the end" % name)
                    print("# " + traceback.format_exc().replace("\n", "\n# "))
    except (subprocess.CalledProcessError, RuntimeError) as e:
        tap.ok(False, "a throwaway cluster with pg_imgset: %s" % e)
    tap.finish()


if __name__ == "__main__":
    main()
