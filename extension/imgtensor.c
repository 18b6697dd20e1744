/* imgtensor.c — the imgtensor type: text and binary I/O, typmod, casts, accessors, codecs. */
#include "postgres.h"

#include <limits.h>
#include <zlib.h>

#include "catalog/pg_type.h"
#include "common/int.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "imgtensor.h"
#include "../loaders/error.h"

#ifdef USE_LZ4
#if defined(__has_include) && __has_include(<lz4.h>)
#include <lz4.h>
#else
/* The server links liblz4 (USE_LZ4), so its symbols resolve when this module loads; only the
 * development header may be missing. These prototypes are LZ4's stable API since r131. */
extern int	LZ4_compressBound(int inputSize);
extern int	LZ4_compress_default(const char *src, char *dst, int srcSize, int dstCapacity);
extern int	LZ4_decompress_safe(const char *src, char *dst, int compressedSize,
								int dstCapacity);
#endif
#endif

PG_MODULE_MAGIC;

extern PGDLLEXPORT void _PG_init(void);

/* The library's interrupt hook (loaders/error.h): long loops of the nn core, the checkpoint
 * parser and the resizes stop here on a cancel, a statement_timeout or a shutdown. */
static void
ImgsetCheckInterrupts(void)
{
	CHECK_FOR_INTERRUPTS();
}

const char *
ImgsetLibraryError(void)
{
	const char *message = imgset_error();
	StringInfoData buf;

	if (GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
		return message;
	initStringInfo(&buf);
	for (const unsigned char *p = (const unsigned char *) message; *p; p++)
	{
		if (*p < 0x80)
			appendStringInfoChar(&buf, (char) *p);
		else
			appendStringInfo(&buf, "\\x%02x", *p);
	}
	return buf.data;
}

/* When a backend loads the module: the settings of its caches and the interrupt hook. */
void
_PG_init(void)
{
	ImgsetBatchInit();
	ImgsetInferInit();
	MarkGUCPrefixReserved("imgset");
	imgset_set_interrupt_hook(ImgsetCheckInterrupts);
}

/* Longest prefix of a bad literal quoted in an error message, in bytes (whole characters). */
#define LITERAL_QUOTE_MAX 40
/* zlib works through a value in pieces of this many input bytes, checking for interrupts in
 * between: deflating a 1 GB value takes tens of seconds. */
#define ZLIB_PIECE ((Size) 4 << 20)

int
ImgTensorElementSize(int dtype)
{
	switch (dtype)
	{
		case IMGTENSOR_UINT8:
			return 1;
		case IMGTENSOR_FLOAT32:
			return 4;
		default:
			return 0;
	}
}

const char *
ImgTensorDtypeName(int dtype)
{
	switch (dtype)
	{
		case IMGTENSOR_UINT8:
			return "uint8";
		case IMGTENSOR_FLOAT32:
			return "float32";
		default:
			return "?";
	}
}

const char *
ImgTensorCodecName(int codec)
{
	switch (codec)
	{
		case IMGTENSOR_CODEC_NONE:
			return "none";
		case IMGTENSOR_CODEC_ZLIB:
			return "zlib";
		case IMGTENSOR_CODEC_LZ4:
			return "lz4";
		default:
			return "?";
	}
}

Size
ImgTensorCheckShape(const char *what, int dtype, int64 height, int64 width, int64 channels)
{
	int64		elements;
	int64		bytes;

	if (height < 1 || height > IMGTENSOR_MAX_SIDE ||
		width < 1 || width > IMGTENSOR_MAX_SIDE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: image size " INT64_FORMAT "x" INT64_FORMAT " is out of range",
						what, height, width),
				 errdetail("Height and width of an imgtensor must be between 1 and %d.",
						   IMGTENSOR_MAX_SIDE)));
	if (channels < 1 || channels > IMGTENSOR_MAX_CHANNELS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: " INT64_FORMAT " channels is out of range", what, channels),
				 errdetail("An imgtensor has 1 to %d channels.", IMGTENSOR_MAX_CHANNELS)));
	if (ImgTensorElementSize(dtype) == 0)
		elog(ERROR, "%s: unknown imgtensor dtype %d", what, dtype);

	/* Sides and channels are bounded above, but check each product anyway. */
	if (pg_mul_s64_overflow(height, width, &elements) ||
		pg_mul_s64_overflow(elements, channels, &elements) ||
		pg_mul_s64_overflow(elements, ImgTensorElementSize(dtype), &bytes) ||
		bytes > (int64) (MaxAllocSize - IMGTENSOR_HEADER_SIZE))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: a %s imgtensor of " INT64_FORMAT "x" INT64_FORMAT "x" INT64_FORMAT
						" is too large", what, ImgTensorDtypeName(dtype),
						height, width, channels),
				 errdetail("An imgtensor holds at most %zu bytes of pixels.",
						   (size_t) (MaxAllocSize - IMGTENSOR_HEADER_SIZE))));
	return (Size) bytes;
}

ImgTensor *
ImgTensorCreate(int dtype, int32 height, int32 width, int32 channels)
{
	Size		bytes = ImgTensorCheckShape("imgtensor", dtype, height, width, channels);
	/* Not zeroed: a 1 GB memset could not be interrupted, and every caller writes all of it. */
	ImgTensor  *t = (ImgTensor *) palloc_extended(IMGTENSOR_SIZE(bytes), 0);

	memset(t, 0, IMGTENSOR_HEADER_SIZE);
	SET_VARSIZE(t, IMGTENSOR_SIZE(bytes));
	t->magic = IMGTENSOR_MAGIC;
	t->version = IMGTENSOR_VERSION;
	t->dtype = dtype;
	t->codec = IMGTENSOR_CODEC_NONE;
	t->height = height;
	t->width = width;
	t->channels = channels;
	return t;
}

Size
ImgTensorPayloadBytes(const ImgTensor *t)
{
	return (Size) t->height * t->width * t->channels * ImgTensorElementSize(t->dtype);
}

/* Check the header of a stored value; with full, also that an uncompressed payload's length
 * matches its shape (a header-only slice passes full = false). */
static void
CheckStored(const ImgTensor *t, bool full)
{
	if (VARSIZE(t) < IMGTENSOR_HEADER_SIZE ||
		t->magic != IMGTENSOR_MAGIC || t->version != IMGTENSOR_VERSION ||
		ImgTensorElementSize(t->dtype) == 0 || t->codec > IMGTENSOR_CODEC_LZ4 ||
		t->reserved != 0 ||
		t->height < 1 || t->height > IMGTENSOR_MAX_SIDE ||
		t->width < 1 || t->width > IMGTENSOR_MAX_SIDE ||
		t->channels < 1 || t->channels > IMGTENSOR_MAX_CHANNELS)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("corrupt imgtensor value"),
				 errdetail("The stored header is not a valid imgtensor header.")));
	if (full && t->codec == IMGTENSOR_CODEC_NONE &&
		VARSIZE(t) != IMGTENSOR_SIZE(ImgTensorPayloadBytes(t)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("corrupt imgtensor value"),
				 errdetail("The stored payload has %zu bytes, its shape needs %zu.",
						   (size_t) (VARSIZE(t) - IMGTENSOR_HEADER_SIZE),
						   ImgTensorPayloadBytes(t))));
}

void
ImgTensorCheckStored(const ImgTensor *t)
{
	CheckStored(t, true);
}

void
ImgTensorCheckTypmod(const ImgTensor *t, int32 typmod)
{
	if (typmod < 0)
		return;
	if (t->height != IMGTENSOR_TYPMOD_HEIGHT(typmod) ||
		t->width != IMGTENSOR_TYPMOD_WIDTH(typmod) ||
		t->channels != IMGTENSOR_TYPMOD_CHANNELS(typmod))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("imgtensor shape %dx%dx%d does not match imgtensor(%d,%d,%d)",
						t->height, t->width, t->channels,
						IMGTENSOR_TYPMOD_HEIGHT(typmod), IMGTENSOR_TYPMOD_WIDTH(typmod),
						IMGTENSOR_TYPMOD_CHANNELS(typmod))));
}

/* Ereport a corrupt compressed payload. */
static void
CorruptPayload(const ImgTensor *t)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("corrupt imgtensor value"),
			 errdetail("The %s-compressed payload does not decompress to %zu bytes.",
					   ImgTensorCodecName(t->codec), ImgTensorPayloadBytes(t))));
}

/* zlib's allocator: the current memory context, so a call cancelled between pieces leaks
 * nothing (the context goes with the statement). */
static voidpf
ZlibAlloc(voidpf opaque, uInt items, uInt size)
{
	return palloc_extended((Size) items * size, MCXT_ALLOC_HUGE);
}

static void
ZlibFree(voidpf opaque, voidpf address)
{
	pfree(address);
}

/* Inflate src into exactly dst_bytes at dst, CHECK_FOR_INTERRUPTS between pieces; false when
 * the stream is corrupt or decompresses to another size. */
static bool
ZlibInflate(const uint8 *src, Size src_bytes, uint8 *dst, Size dst_bytes)
{
	z_stream	zs;
	int			rc = Z_OK;

	memset(&zs, 0, sizeof(zs));
	zs.zalloc = ZlibAlloc;
	zs.zfree = ZlibFree;
	if (inflateInit(&zs) != Z_OK)
		elog(ERROR, "imgtensor: zlib inflateInit failed");
	zs.next_in = (Bytef *) src;
	zs.next_out = dst;
	while (rc == Z_OK)
	{
		CHECK_FOR_INTERRUPTS();
		zs.avail_in = (uInt) Min(src_bytes - ((const uint8 *) zs.next_in - src), ZLIB_PIECE);
		zs.avail_out = (uInt) Min(dst_bytes - (zs.next_out - dst), ZLIB_PIECE);
		rc = inflate(&zs, Z_NO_FLUSH);
		if (rc == Z_BUF_ERROR && zs.avail_in == 0 && zs.avail_out == 0)
			rc = Z_OK;			/* a piece's output is full: go on */
	}
	inflateEnd(&zs);
	return rc == Z_STREAM_END && zs.total_out == dst_bytes &&
		(const uint8 *) zs.next_in - src == (ptrdiff_t) src_bytes;
}

/* Deflate src (bytes) into out (room for compressBound(bytes)), CHECK_FOR_INTERRUPTS between
 * pieces; returns the compressed size. */
static Size
ZlibDeflate(const uint8 *src, Size bytes, uint8 *out, Size room)
{
	z_stream	zs;
	int			rc;

	memset(&zs, 0, sizeof(zs));
	zs.zalloc = ZlibAlloc;
	zs.zfree = ZlibFree;
	if (deflateInit(&zs, Z_DEFAULT_COMPRESSION) != Z_OK)
		elog(ERROR, "imgset_compress: zlib deflateInit failed");
	zs.next_in = (Bytef *) src;
	zs.next_out = out;
	do
	{
		Size		left = bytes - ((const uint8 *) zs.next_in - src);

		CHECK_FOR_INTERRUPTS();
		zs.avail_in = (uInt) Min(left, ZLIB_PIECE);
		zs.avail_out = (uInt) Min(room - (zs.next_out - out), (Size) UINT_MAX);
		rc = deflate(&zs, left <= ZLIB_PIECE ? Z_FINISH : Z_NO_FLUSH);
	} while (rc == Z_OK);
	if (rc != Z_STREAM_END)
		elog(ERROR, "imgset_compress: zlib compression failed");
	deflateEnd(&zs);
	return zs.total_out;
}

void
ImgTensorDecodeInto(const ImgTensor *t, uint8 *dst, Size dst_bytes)
{
	Size		stored = VARSIZE(t) - IMGTENSOR_HEADER_SIZE;

	Assert(dst_bytes == ImgTensorPayloadBytes(t));
	switch (t->codec)
	{
		case IMGTENSOR_CODEC_NONE:
			if (stored != dst_bytes)
				CheckStored(t, true);
			memcpy(dst, t->data, dst_bytes);
			break;
		case IMGTENSOR_CODEC_ZLIB:
			if (!ZlibInflate(t->data, stored, dst, dst_bytes))
				CorruptPayload(t);
			break;
		case IMGTENSOR_CODEC_LZ4:
#ifdef USE_LZ4
			if (stored > INT_MAX ||
				LZ4_decompress_safe((const char *) t->data, (char *) dst, (int) stored,
									(int) dst_bytes) != (int) dst_bytes)
				CorruptPayload(t);
			break;
#else
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("imgtensor value is lz4-compressed, but this server was built without lz4")));
#endif
		default:
			CheckStored(t, true);
	}
}

ImgTensor *
ImgTensorDecode(ImgTensor *t)
{
	ImgTensor  *out;

	CheckStored(t, true);
	if (t->codec == IMGTENSOR_CODEC_NONE)
		return t;
	out = ImgTensorCreate(t->dtype, t->height, t->width, t->channels);
	ImgTensorDecodeInto(t, out->data, ImgTensorPayloadBytes(out));
	return out;
}

/* Float payloads travel little-endian; on a big-endian server swap them in place. */
static void
SwapFloatsIfBigEndian(uint8 *data, Size bytes)
{
#ifdef WORDS_BIGENDIAN
	for (Size i = 0; i + 4 <= bytes; i += 4)
	{
		uint32		v;

		memcpy(&v, data + i, 4);
		v = pg_bswap32(v);
		memcpy(data + i, &v, 4);
	}
#endif
}

/* Bytes of the literal's beginning to quote: at most LITERAL_QUOTE_MAX, whole characters
 * (a multibyte character cut in half would make the message invalid in its encoding). */
static int
QuoteLength(const char *literal)
{
	return pg_mbcliplen(literal, (int) strnlen(literal, LITERAL_QUOTE_MAX), LITERAL_QUOTE_MAX);
}

/* Ereport a malformed text literal, quoting its beginning. */
static void
BadLiteral(const char *literal, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type imgtensor: \"%.*s%s\"",
					QuoteLength(literal), literal,
					strlen(literal) > LITERAL_QUOTE_MAX ? "..." : ""),
			 errdetail("%s", detail),
			 errhint("The format is DTYPE:HxWxC:HEX, e.g. uint8:1x2x1:00ff.")));
}

/* Parse 1..5 decimal digits at *p (a shape side); -1 when there are none or too many. */
static int
ParseSide(const char **p)
{
	int			value = 0;
	int			digits = 0;

	while (**p >= '0' && **p <= '9')
	{
		if (++digits > 5)
			return -1;
		value = value * 10 + (**p - '0');
		(*p)++;
	}
	return digits == 0 ? -1 : value;
}

PG_FUNCTION_INFO_V1(imgtensor_in);
Datum
imgtensor_in(PG_FUNCTION_ARGS)
{
	const char *literal = PG_GETARG_CSTRING(0);
	int32		typmod = PG_GETARG_INT32(2);
	const char *p = literal;
	int			dtype;
	int			h,
				w,
				c;
	Size		bytes;
	ImgTensor  *t;

	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (strncmp(p, "uint8:", 6) == 0)
	{
		dtype = IMGTENSOR_UINT8;
		p += 6;
	}
	else if (strncmp(p, "float32:", 8) == 0)
	{
		dtype = IMGTENSOR_FLOAT32;
		p += 8;
	}
	else
		BadLiteral(literal, "It must start with \"uint8:\" or \"float32:\".");

	h = ParseSide(&p);
	if (h < 0 || *p++ != 'x')
		BadLiteral(literal, "Expected the height, then \"x\".");
	w = ParseSide(&p);
	if (w < 0 || *p++ != 'x')
		BadLiteral(literal, "Expected the width, then \"x\".");
	c = ParseSide(&p);
	if (c < 0 || *p++ != ':')
		BadLiteral(literal, "Expected the channel count, then \":\".");
	bytes = ImgTensorCheckShape("imgtensor", dtype, h, w, c);
	/* Check the length before allocating what the shape asks for. */
	if (strnlen(p, 2 * bytes) < 2 * bytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type imgtensor: \"%.*s%s\"",
						QuoteLength(literal), literal,
						strlen(literal) > LITERAL_QUOTE_MAX ? "..." : ""),
				 errdetail("A %dx%dx%d %s imgtensor needs %zu hex digits, found %zu.",
						   h, w, c, ImgTensorDtypeName(dtype), 2 * bytes, strlen(p))));

	t = ImgTensorCreate(dtype, h, w, c);
	ImgTensorCheckTypmod(t, typmod);
	for (Size i = 0; i < bytes; i++)
	{
		int			hi = imgtensor_hex_value(p[0]);
		int			lo = hi < 0 ? -1 : imgtensor_hex_value(p[1]);

		if (lo < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid input syntax for type imgtensor: \"%.*s%s\"",
							QuoteLength(literal), literal,
							strlen(literal) > LITERAL_QUOTE_MAX ? "..." : ""),
					 errdetail("Hex digit %zu of the payload is not 0-9, a-f or A-F.",
							   2 * i + (hi >= 0) + 1)));
		t->data[i] = (uint8) (hi << 4 | lo);
		p += 2;
	}
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p != '\0')
		BadLiteral(literal, "There is more after the payload than its shape needs.");
	if (dtype == IMGTENSOR_FLOAT32)
		SwapFloatsIfBigEndian(t->data, bytes);
	PG_RETURN_IMGTENSOR_P(t);
}

PG_FUNCTION_INFO_V1(imgtensor_out);
Datum
imgtensor_out(PG_FUNCTION_ARGS)
{
	static const char hex[] = "0123456789abcdef";
	ImgTensor  *header = PG_GETARG_IMGTENSOR_HEADER_P(0);
	Size		bytes;
	ImgTensor  *t;
	StringInfoData buf;
	const uint8 *data;
	char	   *out;

	/* The size is in the header: refuse before fetching or decoding up to 1 GB. */
	CheckStored(header, false);
	bytes = ImgTensorPayloadBytes(header);
	if (bytes > (MaxAllocSize - 64) / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("imgtensor of %zu bytes is too large for text output", bytes),
				 errhint("Use binary output (COPY … (FORMAT binary), a binary-mode client) "
						 "or cast to bytea.")));
	t = PG_GETARG_IMGTENSOR_DECODED(0);
	data = t->data;
	if (t->dtype == IMGTENSOR_FLOAT32)
	{
		uint8	   *copy = palloc(bytes);

		memcpy(copy, t->data, bytes);
		SwapFloatsIfBigEndian(copy, bytes);
		data = copy;
	}
	initStringInfo(&buf);
	appendStringInfo(&buf, "%s:%dx%dx%d:", ImgTensorDtypeName(t->dtype),
					 t->height, t->width, t->channels);
	enlargeStringInfo(&buf, (int) (2 * bytes + 1));
	out = buf.data + buf.len;
	for (Size i = 0; i < bytes; i++)
	{
		*out++ = hex[data[i] >> 4];
		*out++ = hex[data[i] & 15];
	}
	*out = '\0';
	buf.len += (int) (2 * bytes);
	PG_RETURN_CSTRING(buf.data);
}

/* Ereport a malformed binary value. */
static void
BadBinary(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid binary value for type imgtensor"),
			 errdetail("%s", detail)));
}

PG_FUNCTION_INFO_V1(imgtensor_recv);
Datum
imgtensor_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int32		typmod = PG_GETARG_INT32(2);
	const uint8 *head;
	int32		h,
				w,
				c,
				reserved;
	Size		bytes;
	ImgTensor  *t;

	if (buf->len - buf->cursor < IMGTENSOR_WIRE_HEADER)
		BadBinary("The value is shorter than the 20-byte imgtensor header.");
	head = (const uint8 *) buf->data + buf->cursor;
	if (head[0] != IMGTENSOR_MAGIC)
		BadBinary("The first byte is not the imgtensor magic 0x49.");
	if (head[1] != IMGTENSOR_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid binary value for type imgtensor"),
				 errdetail("Version %d is not supported (expected %d).", head[1],
						   IMGTENSOR_VERSION)));
	if (ImgTensorElementSize(head[2]) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid binary value for type imgtensor"),
				 errdetail("Unknown dtype code %d (expected 1 = uint8 or 2 = float32).",
						   head[2])));
	if (head[3] != IMGTENSOR_CODEC_NONE)
		BadBinary("Expected codec 0: binary values are sent uncompressed.");
	h = (int32) imgtensor_wire_get32(head + 4);
	w = (int32) imgtensor_wire_get32(head + 8);
	c = (int32) imgtensor_wire_get32(head + 12);
	reserved = (int32) imgtensor_wire_get32(head + 16);
	if (reserved != 0)
		BadBinary("Expected the reserved field to be 0.");
	bytes = ImgTensorCheckShape("imgtensor", head[2], h, w, c);
	if ((Size) (buf->len - buf->cursor - IMGTENSOR_WIRE_HEADER) != bytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid binary value for type imgtensor"),
				 errdetail("A %dx%dx%d %s payload has %zu bytes, not %d.", h, w, c,
						   ImgTensorDtypeName(head[2]), bytes,
						   buf->len - buf->cursor - IMGTENSOR_WIRE_HEADER)));
	t = ImgTensorCreate(head[2], h, w, c);
	ImgTensorCheckTypmod(t, typmod);
	memcpy(t->data, head + IMGTENSOR_WIRE_HEADER, bytes);
	buf->cursor = buf->len;
	if (t->dtype == IMGTENSOR_FLOAT32)
		SwapFloatsIfBigEndian(t->data, bytes);
	PG_RETURN_IMGTENSOR_P(t);
}

PG_FUNCTION_INFO_V1(imgtensor_send);
Datum
imgtensor_send(PG_FUNCTION_ARGS)
{
	ImgTensor  *t = PG_GETARG_IMGTENSOR_P(0);
	Size		bytes;
	uint8		head[IMGTENSOR_WIRE_HEADER];
	StringInfoData buf;

	CheckStored(t, true);
	bytes = ImgTensorPayloadBytes(t);
	imgtensor_wire_header(head, t->dtype, t->height, t->width, t->channels);
	pq_begintypsend(&buf);
	pq_sendbytes(&buf, (const char *) head, IMGTENSOR_WIRE_HEADER);
	/* Decode straight into the message buffer: no intermediate copy. */
	enlargeStringInfo(&buf, (int) bytes);
	ImgTensorDecodeInto(t, (uint8 *) buf.data + buf.len, bytes);
	if (t->dtype == IMGTENSOR_FLOAT32)
		SwapFloatsIfBigEndian((uint8 *) buf.data + buf.len, bytes);
	buf.len += (int) bytes;
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

PG_FUNCTION_INFO_V1(imgtensor_typmod_in);
Datum
imgtensor_typmod_in(PG_FUNCTION_ARGS)
{
	ArrayType  *ta = PG_GETARG_ARRAYTYPE_P(0);
	int32	   *mods;
	int			n;

	mods = ArrayGetIntegerTypmods(ta, &n);
	if (n != 3)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid type modifier for imgtensor"),
				 errdetail("imgtensor takes three modifiers, imgtensor(height, width, channels).")));
	if (mods[0] < 1 || mods[0] > IMGTENSOR_MAX_SIDE || mods[1] < 1 ||
		mods[1] > IMGTENSOR_MAX_SIDE || mods[2] < 1 || mods[2] > IMGTENSOR_MAX_CHANNELS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid type modifier for imgtensor: (%d,%d,%d)",
						mods[0], mods[1], mods[2]),
				 errdetail("Height and width must be between 1 and %d, channels between 1 and %d.",
						   IMGTENSOR_MAX_SIDE, IMGTENSOR_MAX_CHANNELS)));
	PG_RETURN_INT32(IMGTENSOR_TYPMOD(mods[0], mods[1], mods[2]));
}

PG_FUNCTION_INFO_V1(imgtensor_typmod_out);
Datum
imgtensor_typmod_out(PG_FUNCTION_ARGS)
{
	int32		typmod = PG_GETARG_INT32(0);

	if (typmod < 0)
		PG_RETURN_CSTRING(pstrdup(""));
	PG_RETURN_CSTRING(psprintf("(%d,%d,%d)", IMGTENSOR_TYPMOD_HEIGHT(typmod),
							   IMGTENSOR_TYPMOD_WIDTH(typmod),
							   IMGTENSOR_TYPMOD_CHANNELS(typmod)));
}

/* imgtensor(imgtensor, typmod, explicit): the length-coercion cast that enforces a typmod. */
PG_FUNCTION_INFO_V1(imgtensor_coerce);
Datum
imgtensor_coerce(PG_FUNCTION_ARGS)
{
	ImgTensor  *t = PG_GETARG_IMGTENSOR_HEADER_P(0);

	CheckStored(t, false);
	ImgTensorCheckTypmod(t, PG_GETARG_INT32(1));
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/* Ereport that a cast needs a target shape. */
static void
NeedShape(const char *from)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("cannot cast %s to imgtensor without a shape", from),
			 errhint("Cast to imgtensor(height, width, channels) or call imgtensor(value, height, width, channels).")));
}

/* A uint8 value of shape h×w×c from the bytes of a bytea. */
static ImgTensor *
FromBytea(bytea *b, int32 h, int32 w, int32 c)
{
	Size		bytes = ImgTensorCheckShape("imgtensor", IMGTENSOR_UINT8, h, w, c);
	ImgTensor  *t;

	if ((Size) VARSIZE_ANY_EXHDR(b) != bytes)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("cannot cast bytea of %zu bytes to imgtensor(%d,%d,%d)",
						(size_t) VARSIZE_ANY_EXHDR(b), h, w, c),
				 errdetail("A %dx%dx%d uint8 imgtensor needs %zu bytes.", h, w, c, bytes)));
	t = ImgTensorCreate(IMGTENSOR_UINT8, h, w, c);
	memcpy(t->data, VARDATA_ANY(b), bytes);
	return t;
}

PG_FUNCTION_INFO_V1(imgtensor_from_bytea);
Datum
imgtensor_from_bytea(PG_FUNCTION_ARGS)
{
	PG_RETURN_IMGTENSOR_P(FromBytea(PG_GETARG_BYTEA_PP(0), PG_GETARG_INT32(1),
									PG_GETARG_INT32(2), PG_GETARG_INT32(3)));
}

PG_FUNCTION_INFO_V1(imgtensor_from_bytea_typmod);
Datum
imgtensor_from_bytea_typmod(PG_FUNCTION_ARGS)
{
	int32		typmod = PG_GETARG_INT32(1);

	if (typmod < 0)
		NeedShape("bytea");
	PG_RETURN_IMGTENSOR_P(FromBytea(PG_GETARG_BYTEA_PP(0), IMGTENSOR_TYPMOD_HEIGHT(typmod),
									IMGTENSOR_TYPMOD_WIDTH(typmod),
									IMGTENSOR_TYPMOD_CHANNELS(typmod)));
}

PG_FUNCTION_INFO_V1(imgtensor_to_bytea);
Datum
imgtensor_to_bytea(PG_FUNCTION_ARGS)
{
	ImgTensor  *t = PG_GETARG_IMGTENSOR_P(0);
	Size		bytes;
	bytea	   *b;

	CheckStored(t, true);
	bytes = ImgTensorPayloadBytes(t);
	b = (bytea *) palloc(VARHDRSZ + bytes);
	SET_VARSIZE(b, VARHDRSZ + bytes);
	ImgTensorDecodeInto(t, (uint8 *) VARDATA(b), bytes);
	if (t->dtype == IMGTENSOR_FLOAT32)
		SwapFloatsIfBigEndian((uint8 *) VARDATA(b), bytes);
	PG_RETURN_BYTEA_P(b);
}

/* A value of shape h×w×c from an int4[] (uint8) or float4[] (float32) of h*w*c elements. */
static ImgTensor *
FromArray(ArrayType *a, int32 h, int32 w, int32 c)
{
	bool		is_int = ARR_ELEMTYPE(a) == INT4OID;
	int			dtype = is_int ? IMGTENSOR_UINT8 : IMGTENSOR_FLOAT32;
	const char *from = is_int ? "integer[]" : "real[]";
	Size		bytes = ImgTensorCheckShape("imgtensor", dtype, h, w, c);
	Size		n = bytes / ImgTensorElementSize(dtype);
	int			nitems = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	ImgTensor  *t;

	if (ARR_ELEMTYPE(a) != INT4OID && ARR_ELEMTYPE(a) != FLOAT4OID)
		elog(ERROR, "imgtensor: unexpected array element type %u", ARR_ELEMTYPE(a));
	if ((Size) nitems != n)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("cannot cast %s of %d elements to imgtensor(%d,%d,%d)",
						from, nitems, h, w, c),
				 errdetail("A %dx%dx%d imgtensor has %zu elements.", h, w, c, n)));
	if (array_contains_nulls(a))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cannot cast %s containing NULL to imgtensor", from)));
	t = ImgTensorCreate(dtype, h, w, c);
	if (is_int)
	{
		const int32 *v = (const int32 *) ARR_DATA_PTR(a);

		for (Size i = 0; i < n; i++)
		{
			if (v[i] < 0 || v[i] > 255)
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("imgtensor pixel value %d is out of range for uint8", v[i]),
						 errdetail("Element %zu of the integer[] is not in 0..255.", i + 1)));
			t->data[i] = (uint8) v[i];
		}
	}
	else
		memcpy(t->data, ARR_DATA_PTR(a), bytes);
	return t;
}

PG_FUNCTION_INFO_V1(imgtensor_from_array);
Datum
imgtensor_from_array(PG_FUNCTION_ARGS)
{
	PG_RETURN_IMGTENSOR_P(FromArray(PG_GETARG_ARRAYTYPE_P(0), PG_GETARG_INT32(1),
									PG_GETARG_INT32(2), PG_GETARG_INT32(3)));
}

PG_FUNCTION_INFO_V1(imgtensor_from_array_typmod);
Datum
imgtensor_from_array_typmod(PG_FUNCTION_ARGS)
{
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(0);
	int32		typmod = PG_GETARG_INT32(1);

	if (typmod < 0)
		NeedShape(ARR_ELEMTYPE(a) == INT4OID ? "integer[]" : "real[]");
	PG_RETURN_IMGTENSOR_P(FromArray(a, IMGTENSOR_TYPMOD_HEIGHT(typmod),
									IMGTENSOR_TYPMOD_WIDTH(typmod),
									IMGTENSOR_TYPMOD_CHANNELS(typmod)));
}

/* The pixels as a 3-D (H, W, C) array of int4 or float4. */
static ArrayType *
ToArray(ImgTensor *t, Oid elemtype)
{
	Size		n = ImgTensorPayloadBytes(t) / ImgTensorElementSize(t->dtype);
	int			dims[3] = {t->height, t->width, t->channels};
	int			lbs[3] = {1, 1, 1};
	Datum	   *elems;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	if (n > MaxArraySize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("imgtensor of %zu elements is too large for an array", n),
				 errdetail("An array holds at most %zu elements.", (size_t) MaxArraySize)));
	elems = palloc(n * sizeof(Datum));

	for (Size i = 0; i < n; i++)
	{
		if (t->dtype == IMGTENSOR_UINT8)
			elems[i] = elemtype == INT4OID ? Int32GetDatum(t->data[i])
				: Float4GetDatum((float4) t->data[i]);
		else
		{
			float4		f;

			memcpy(&f, t->data + 4 * i, 4);
			elems[i] = Float4GetDatum(f);
		}
	}
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return construct_md_array(elems, NULL, 3, dims, lbs, elemtype, typlen, typbyval, typalign);
}

PG_FUNCTION_INFO_V1(imgtensor_to_int4_array);
Datum
imgtensor_to_int4_array(PG_FUNCTION_ARGS)
{
	ImgTensor  *t = PG_GETARG_IMGTENSOR_DECODED(0);

	if (t->dtype != IMGTENSOR_UINT8)
		ereport(ERROR,
				(errcode(ERRCODE_CANNOT_COERCE),
				 errmsg("cannot cast a %s imgtensor to integer[]", ImgTensorDtypeName(t->dtype)),
				 errhint("Cast to real[] instead.")));
	PG_RETURN_ARRAYTYPE_P(ToArray(t, INT4OID));
}

PG_FUNCTION_INFO_V1(imgtensor_to_float4_array);
Datum
imgtensor_to_float4_array(PG_FUNCTION_ARGS)
{
	PG_RETURN_ARRAYTYPE_P(ToArray(PG_GETARG_IMGTENSOR_DECODED(0), FLOAT4OID));
}

/* Accessors: each reads only the header of a toasted value. */

/* The header of argument n, checked. */
static ImgTensor *
HeaderArg(FunctionCallInfo fcinfo, int n)
{
	ImgTensor  *t = PG_GETARG_IMGTENSOR_HEADER_P(n);

	CheckStored(t, false);
	return t;
}

PG_FUNCTION_INFO_V1(imgtensor_height);
Datum
imgtensor_height(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(HeaderArg(fcinfo, 0)->height);
}

PG_FUNCTION_INFO_V1(imgtensor_width);
Datum
imgtensor_width(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(HeaderArg(fcinfo, 0)->width);
}

PG_FUNCTION_INFO_V1(imgtensor_channels);
Datum
imgtensor_channels(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(HeaderArg(fcinfo, 0)->channels);
}

PG_FUNCTION_INFO_V1(imgtensor_dtype);
Datum
imgtensor_dtype(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(ImgTensorDtypeName(HeaderArg(fcinfo, 0)->dtype)));
}

PG_FUNCTION_INFO_V1(imgtensor_codec);
Datum
imgtensor_codec(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(ImgTensorCodecName(HeaderArg(fcinfo, 0)->codec)));
}

PG_FUNCTION_INFO_V1(imgtensor_nbytes);
Datum
imgtensor_nbytes(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) ImgTensorPayloadBytes(HeaderArg(fcinfo, 0)));
}

/* 1 when both values have the same dtype, shape and pixels (compression aside). */
static bool
ImgTensorEqual(FunctionCallInfo fcinfo)
{
	ImgTensor  *a = PG_GETARG_IMGTENSOR_DECODED(0);
	ImgTensor  *b = PG_GETARG_IMGTENSOR_DECODED(1);

	return a->dtype == b->dtype && a->height == b->height && a->width == b->width &&
		a->channels == b->channels &&
		memcmp(a->data, b->data, ImgTensorPayloadBytes(a)) == 0;
}

PG_FUNCTION_INFO_V1(imgtensor_eq);
Datum
imgtensor_eq(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ImgTensorEqual(fcinfo));
}

PG_FUNCTION_INFO_V1(imgtensor_ne);
Datum
imgtensor_ne(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(!ImgTensorEqual(fcinfo));
}

PG_FUNCTION_INFO_V1(imgset_compress);
Datum
imgset_compress(PG_FUNCTION_ARGS)
{
	ImgTensor  *t = PG_GETARG_IMGTENSOR_DECODED(0);
	char	   *codec_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Size		bytes = ImgTensorPayloadBytes(t);
	ImgTensor  *out;
	Size		packed;
	int			codec;

	if (strcmp(codec_name, "none") == 0)
		codec = IMGTENSOR_CODEC_NONE;
	else if (strcmp(codec_name, "zlib") == 0)
		codec = IMGTENSOR_CODEC_ZLIB;
	else if (strcmp(codec_name, "lz4") == 0)
		codec = IMGTENSOR_CODEC_LZ4;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("imgset_compress: unknown codec \"%s\"", codec_name),
				 errhint("Use 'zlib', 'lz4' or 'none'.")));
	if (codec == IMGTENSOR_CODEC_NONE)
		PG_RETURN_IMGTENSOR_P(t);

	if (codec == IMGTENSOR_CODEC_ZLIB)
	{
		Size		bound = compressBound(bytes);

		out = (ImgTensor *) palloc_extended(IMGTENSOR_SIZE(bound), MCXT_ALLOC_HUGE);
		packed = ZlibDeflate(t->data, bytes, out->data, bound);
	}
	else
	{
#ifdef USE_LZ4
		int			bound = LZ4_compressBound((int) bytes);

		if (bound <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("imgset_compress: imgtensor of %zu bytes is too large for lz4", bytes)));
		out = (ImgTensor *) palloc(IMGTENSOR_SIZE(bound));
		packed = LZ4_compress_default((const char *) t->data, (char *) out->data, (int) bytes,
									  bound);
		if (packed == 0)
			elog(ERROR, "imgset_compress: lz4 compression failed");
#else
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("imgset_compress: this server was built without lz4")));
#endif
	}
	/* Keep the value uncompressed when compression does not make it smaller. */
	if (packed >= bytes)
		PG_RETURN_IMGTENSOR_P(t);
	memcpy(out, t, IMGTENSOR_HEADER_SIZE);
	out->codec = codec;
	SET_VARSIZE(out, IMGTENSOR_SIZE(packed));
	PG_RETURN_IMGTENSOR_P(out);
}
