"""imgset.pg — imgtensor values as numpy arrays in psycopg 3 and psycopg2: register(conn).

    import psycopg, numpy as np
    from imgset import pg
    conn = psycopg.connect("dbname=mydb")
    pg.register(conn)                                  # once per connection
    conn.execute("INSERT INTO t (img) VALUES (%s)", [np.zeros((32, 32, 3), np.uint8)])
    img = conn.execute("SELECT img FROM t").fetchone()[0]    # ndarray (32, 32, 3) uint8

After register():
- imgtensor and imgtensor[] results come back as numpy arrays of shape (H, W, C) (always three
  axes, channels last), dtype uint8 or float32, native byte order, writable and owning their
  memory; NULL is None. Compressed values arrive decompressed (the server sends them so).
- numpy arrays go in as imgtensor: (H, W, C) or (H, W) (one channel), uint8 or float32, any
  strides or byte order. Any other dtype or shape is refused with TypeError / ValueError naming
  it, before anything is sent; None is NULL; a list of arrays is an imgtensor[].
- What the server refuses (an array whose shape does not match a column's imgtensor(H,W,C), a
  malformed literal) raises the driver's own error carrying the server's message and SQLSTATE.

psycopg 3 (Debian's python3-psycopg) uses both formats: a parameter written %s or %b is sent in
binary, %t in text; results are text unless the cursor is binary (conn.cursor(binary=True) or
execute(…, binary=True)). COPY … (FORMAT binary) and (FORMAT text) work through cursor.copy()
after copy.set_types([…, "imgtensor"]). The adapters are registered on the connection or
cursor passed, so other connections are untouched.

psycopg2 (python3-psycopg2) has no binary format: results are parsed from text and arrays are
sent as 'uint8:HxWxC:…'::imgset.imgtensor literals. Its parameter adapters are process-wide
(psycopg2.extensions.register_adapter has no scope): after register(), a numpy array passed
to any psycopg2 query becomes an imgtensor — as pgvector's numpy adapter makes it a vector, so
the two do not mix in one process. The result parsers are registered on the connection or
cursor passed. For COPY with psycopg2 use text: to_text() writes a column value.

to_text, from_text, to_binary and from_binary are the two wire formats on their own (the
text format of extension/README.md and the binary one of extension/imgtensor_wire.h), for other
drivers and for COPY; they raise TypeError / ValueError on bad input.
"""
import binascii
import importlib
import re
import struct

try:
    import numpy as np
except ImportError as e:  # pragma: no cover - numpy is a dependency of the whole package
    raise ImportError("imgset.pg needs numpy (Debian: apt-get install python3-numpy)") from e

__all__ = ["register", "to_text", "from_text", "to_binary", "from_binary"]

TYPE_NAME = "imgset.imgtensor"
MAX_SIDE = 16384  # height and width are 1 … MAX_SIDE
MAX_CHANNELS = 4
MAX_PAYLOAD = 0x3FFFFFFF - 24  # PostgreSQL's MaxAllocSize less the value's own header

# dtype code on the wire → (name in the text format, element type on the wire, numpy type).
_DTYPES = {1: ("uint8", np.dtype("u1"), np.dtype(np.uint8)),
           2: ("float32", np.dtype("<f4"), np.dtype(np.float32))}
_CODE_BY_NAME = {name: code for code, (name, _, _) in _DTYPES.items()}
_CODECS = {0: "none", 1: "zlib", 2: "lz4"}
_MAGIC, _VERSION = 0x49, 1
_HEADER = struct.Struct(">BBBBiiii")  # magic, version, dtype, codec, height, width, channels, 0
_TEXT_HEAD = re.compile(rb"(uint8|float32):([0-9]{1,10})x([0-9]{1,10})x([0-9]{1,10}):")

# The type and its array type in the connection's database; no row when the extension is absent.
_TYPE_QUERY = ("SELECT t.oid, t.typarray FROM pg_catalog.pg_type t "
               "WHERE t.oid = pg_catalog.to_regtype('%s')" % TYPE_NAME)


def _shape_text(shape):
    """'2x3x1': a shape the way the server writes it."""
    return "x".join(str(n) for n in shape)


def _check_shape(dtype_code, height, width, channels, what):
    """The payload size in bytes of a valid shape; ValueError naming `what` otherwise."""
    shape = _shape_text((height, width, channels))
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError("%s: image size %s is out of range (height and width of an imgtensor "
                         "are 1 to %d)" % (what, shape, MAX_SIDE))
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError("%s: shape %s has %d channels (an imgtensor has 1 to %d)"
                         % (what, shape, channels, MAX_CHANNELS))
    nbytes = height * width * channels * _DTYPES[dtype_code][1].itemsize
    if nbytes > MAX_PAYLOAD:
        raise ValueError("%s: a %s imgtensor of %s has %d bytes of pixels, more than the %d "
                         "one value holds" % (what, _DTYPES[dtype_code][0], shape, nbytes,
                                              MAX_PAYLOAD))
    return nbytes


def _check_array(arr):
    """(dtype code, (H, W, C)) of an array that can be an imgtensor; TypeError / ValueError."""
    if not isinstance(arr, np.ndarray):
        raise TypeError("imgtensor: expected a numpy.ndarray, got %s" % type(arr).__name__)
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 1:
        code = 1
    elif arr.dtype.kind == "f" and arr.dtype.itemsize == 4:
        code = 2
    else:
        raise TypeError("imgtensor: a %s array of shape %s cannot be an imgtensor (uint8 or "
                        "float32 only; convert with .astype(numpy.uint8) or "
                        ".astype(numpy.float32))" % (arr.dtype, arr.shape))
    if arr.ndim == 2:
        shape = arr.shape + (1,)
    elif arr.ndim == 3:
        shape = arr.shape
    else:
        raise ValueError("imgtensor: an array of shape %s cannot be an imgtensor (expected "
                         "(H, W, C) or (H, W), channels last)" % (arr.shape,))
    _check_shape(code, *shape, "imgtensor: array of shape %s" % (arr.shape,))
    return code, shape


def _text_bytes(arr):
    """The text form of an array as ASCII bytes: b'DTYPE:HxWxC:HEX'."""
    code, shape = _check_array(arr)
    name, wire, _ = _DTYPES[code]
    head = ("%s:%s:" % (name, _shape_text(shape))).encode("ascii")
    return head + binascii.b2a_hex(np.ascontiguousarray(arr, dtype=wire))


def to_text(arr):
    """The imgtensor text form of a numpy array, 'DTYPE:HxWxC:HEX'."""
    return _text_bytes(arr).decode("ascii")


def to_binary(arr):
    """The imgtensor binary form (send/recv, COPY binary) of a numpy array, as a bytearray."""
    code, shape = _check_array(arr)
    wire = _DTYPES[code][1]
    out = bytearray(_HEADER.size + arr.size * wire.itemsize)
    _HEADER.pack_into(out, 0, _MAGIC, _VERSION, code, 0, *shape, 0)
    # One copy from any strides and byte order straight into the message.
    np.frombuffer(out, wire, offset=_HEADER.size).reshape(arr.shape)[...] = arr
    return out


def _array(payload, code, shape, offset=0):
    """A writable native-order (H, W, C) array copied from the payload's wire elements."""
    _, wire, native = _DTYPES[code]
    count = shape[0] * shape[1] * shape[2]
    return np.frombuffer(payload, wire, count, offset).astype(native).reshape(shape)


def from_text(value):
    """The numpy array (H, W, C) of an imgtensor in text form (str or bytes); ValueError."""
    raw = value.encode("ascii", "replace") if isinstance(value, str) else bytes(value)
    text = raw.strip()
    m = _TEXT_HEAD.match(text)
    if not m:
        raise ValueError("invalid imgtensor text %r: expected DTYPE:HxWxC:HEX with DTYPE uint8 "
                         "or float32" % text[:40].decode("ascii", "replace"))
    code = _CODE_BY_NAME[m.group(1).decode()]
    shape = tuple(int(g) for g in m.group(2, 3, 4))
    what = "imgtensor text %s:%s" % (m.group(1).decode(), _shape_text(shape))
    nbytes = _check_shape(code, *shape, what)
    digits = memoryview(text)[m.end():]
    if len(digits) != 2 * nbytes:
        raise ValueError("%s: expected %d hex digits, got %d" % (what, 2 * nbytes, len(digits)))
    try:
        payload = binascii.a2b_hex(digits)
    except binascii.Error:
        raise ValueError("%s: the payload is not hex digits" % what) from None
    return _array(payload, code, shape)


def from_binary(data):
    """The numpy array (H, W, C) of an imgtensor in binary form (any bytes-like); ValueError."""
    if len(data) < _HEADER.size:
        raise ValueError("imgtensor binary value of %d bytes is shorter than its %d-byte header"
                         % (len(data), _HEADER.size))
    magic, version, code, codec, height, width, channels, reserved = _HEADER.unpack_from(data)
    if magic != _MAGIC or version != _VERSION:
        raise ValueError("imgtensor binary value starts with 0x%02x 0x%02x, expected the magic "
                         "0x49 and version %d" % (magic, version, _VERSION))
    if code not in _DTYPES:
        raise ValueError("imgtensor binary value has dtype code %d (expected 1 = uint8 or "
                         "2 = float32)" % code)
    if codec != 0:
        raise ValueError("imgtensor binary value is %s-compressed (codec %d): the server sends "
                         "values decompressed, so this one did not come from imgtensor_send"
                         % (_CODECS.get(codec, "unknown"), codec))
    if reserved != 0:
        raise ValueError("imgtensor binary value has %d in its reserved field (expected 0)"
                         % reserved)
    shape = (height, width, channels)
    what = "imgtensor binary %s:%s" % (_DTYPES[code][0], _shape_text(shape))
    nbytes = _check_shape(code, *shape, what)
    if len(data) - _HEADER.size != nbytes:
        raise ValueError("%s: expected %d bytes of pixels, got %d"
                         % (what, nbytes, len(data) - _HEADER.size))
    return _array(data, code, shape, _HEADER.size)


def register(conn):
    """Make imgtensor values numpy arrays on this psycopg 3 or psycopg2 connection (or cursor).

    Looks the type imgset.imgtensor up in the database (the driver's ProgrammingError when
    pg_imgset is not installed there) and registers the adapters described in the module's
    docstring. A psycopg2 connection that was idle is left idle (the lookup is rolled back).
    """
    driver = _driver_of(conn)
    if driver == "psycopg":
        _register_psycopg(conn)
    elif driver == "psycopg2":
        _register_psycopg2(conn)
    else:
        raise TypeError("imgset.pg.register: expected a psycopg 3 or psycopg2 connection or "
                        "cursor, got %s.%s (%s)" % (type(conn).__module__,
                                                    type(conn).__qualname__, _drivers_here()))


def _driver_of(obj):
    """'psycopg' or 'psycopg2': the package whose class obj is an instance of, else None."""
    for cls in type(obj).__mro__:
        package = cls.__module__.partition(".")[0]
        if package in ("psycopg", "psycopg2"):
            return package
    return None


def _drivers_here():
    """Which of the two drivers this Python can import, and how to get a missing one."""
    found = []
    for package, name, debian in (("psycopg", "psycopg 3", "python3-psycopg"),
                                  ("psycopg2", "psycopg2", "python3-psycopg2")):
        try:
            importlib.import_module(package)
            found.append("%s is installed" % name)
        except ImportError:
            found.append("%s is not installed: apt-get install %s" % (name, debian))
    return "; ".join(found)


def _not_found(error_class):
    """The driver's error for a database without the type."""
    return error_class("imgset.pg.register: type %s not found in this database; run CREATE "
                       "EXTENSION pg_imgset there first" % TYPE_NAME)


def _decode_or_raise(decode, data, data_error):
    """decode(data); a malformed value raises the driver's DataError with decode's message."""
    try:
        return decode(data)
    except ValueError as e:
        raise data_error(str(e)) from None


_psycopg_classes = None


def _psycopg_adapter_classes():
    """psycopg 3's dumper and loader classes for imgtensor, made once (psycopg imported lazily)."""
    global _psycopg_classes
    if _psycopg_classes is None:
        import psycopg
        from psycopg.adapt import Dumper, Loader
        from psycopg.pq import Format

        def dumper(fmt, encode):
            class ImgTensorDumper(Dumper):
                """A numpy array as an imgtensor parameter or COPY field."""
                format = fmt

                def dump(self, obj):
                    return encode(obj)
            return ImgTensorDumper

        def loader(fmt, decode):
            class ImgTensorLoader(Loader):
                """An imgtensor result or COPY field as a numpy array."""
                format = fmt

                def load(self, data):
                    return _decode_or_raise(decode, data, psycopg.DataError)
            return ImgTensorLoader

        _psycopg_classes = (dumper(Format.TEXT, _text_bytes), dumper(Format.BINARY, to_binary),
                            loader(Format.TEXT, from_text), loader(Format.BINARY, from_binary))
    return _psycopg_classes


def _register_psycopg(context):
    """register() for psycopg 3: the adapters on the connection or cursor `context`."""
    import psycopg
    from psycopg.rows import tuple_row
    from psycopg.types import TypeInfo

    conn = context if isinstance(context, psycopg.BaseConnection) else context.connection
    if not isinstance(conn, psycopg.Connection):
        raise TypeError("imgset.pg.register: %s is not supported (a psycopg 3 Connection or "
                        "its Cursor only)" % type(conn).__qualname__)
    # Inside its own transaction block, as psycopg's TypeInfo.fetch does, so the connection is
    # left in the state it was found in; tuples whatever row factory the connection has.
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(_TYPE_QUERY).fetchone()
    if row is None:
        raise _not_found(psycopg.ProgrammingError)
    oid, array_oid = row
    # Known by name ("imgtensor", "imgset.imgtensor") for copy.set_types() and by oid, with its
    # array type, for lists of arrays.
    TypeInfo("imgtensor", oid, array_oid, regtype=TYPE_NAME).register(context)
    text_dumper, binary_dumper, text_loader, binary_loader = _psycopg_adapter_classes()
    adapters = context.adapters
    # The binary dumper is registered last, so %s sends binary.
    for dumper in (text_dumper, binary_dumper):
        adapters.register_dumper(np.ndarray, type(dumper.__name__, (dumper,), {"oid": oid}))
    adapters.register_loader(oid, text_loader)
    adapters.register_loader(oid, binary_loader)


class _Psycopg2Adapter:
    """psycopg2's adapter: a numpy array as an imgtensor literal."""

    def __init__(self, arr):
        self.arr = arr

    def getquoted(self):
        """'DTYPE:HxWxC:HEX'::imgset.imgtensor (only [0-9a-z:x] inside the quotes)."""
        return b"'" + _text_bytes(self.arr) + b"'::" + TYPE_NAME.encode("ascii")


def _register_psycopg2(scope):
    """register() for psycopg2: result parsers on the connection or cursor `scope`."""
    import psycopg2
    import psycopg2.extensions as ext

    conn = scope if isinstance(scope, ext.connection) else scope.connection
    was_idle = (not conn.autocommit
                and conn.get_transaction_status() == ext.TRANSACTION_STATUS_IDLE)
    with conn.cursor(cursor_factory=ext.cursor) as cur:
        cur.execute(_TYPE_QUERY)
        row = cur.fetchone()
    if was_idle:
        conn.rollback()  # psycopg2 opened a transaction for the lookup alone
    if row is None:
        raise _not_found(psycopg2.ProgrammingError)
    oid, array_oid = row

    def cast(value, cursor):
        """imgtensor text → numpy array (None for NULL)."""
        return None if value is None else _decode_or_raise(from_text, value, psycopg2.DataError)

    imgtensor = ext.new_type((oid,), "IMGTENSOR", cast)
    ext.register_type(imgtensor, scope)
    ext.register_type(ext.new_array_type((array_oid,), "IMGTENSOR[]", imgtensor), scope)
    ext.register_adapter(np.ndarray, _Psycopg2Adapter)
