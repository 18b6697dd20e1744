/* imgtensor.h — the imgtensor type: an H×W×C uint8 or float32 image with an optional
 * compressed payload (layout, access macros, and helpers shared by the extension's files). */
#ifndef IMGTENSOR_H
#define IMGTENSOR_H

#include "fmgr.h"

#include "imgtensor_wire.h"

/*
 * Only what PostgreSQL calls is exported from the module (it is built with
 * -fvisibility=hidden): PG_MODULE_MAGIC, _PG_init and the SQL-callable functions.
 * PostgreSQL 16 declares those PGDLLEXPORT itself; on 15 PGDLLEXPORT is empty and
 * PG_FUNCTION_INFO_V1 does not mark the function, so do both here, as 16 does.
 */
#if PG_VERSION_NUM < 160000 && defined(__GNUC__)
#undef PGDLLEXPORT
#define PGDLLEXPORT __attribute__((visibility("default")))
#undef PG_FUNCTION_INFO_V1
#define PG_FUNCTION_INFO_V1(funcname) \
extern PGDLLEXPORT Datum funcname(PG_FUNCTION_ARGS); \
extern PGDLLEXPORT const Pg_finfo_record * CppConcat(pg_finfo_,funcname)(void); \
const Pg_finfo_record * \
CppConcat(pg_finfo_,funcname) (void) \
{ \
	static const Pg_finfo_record my_finfo = { 1 }; \
	return &my_finfo; \
} \
extern int no_such_variable
#endif

/* The library's last error message (loaders/error.h, always UTF-8) for an error report in
 * this database: as it is in a UTF-8 (or SQL_ASCII) database, with every non-ASCII byte
 * written \xNN in any other, where UTF-8 bytes would be wrong or invalid characters. */
extern const char *ImgsetLibraryError(void);

/* Called by _PG_init (imgtensor.c) when a backend loads the module: each part's settings. */
extern void ImgsetBatchInit(void);
extern void ImgsetInferInit(void);

/*
 * In memory and on disk: the varlena header, then the same fields as the wire header (in the
 * server's byte order), then the payload. The payload is H×W×C elements, channels-last; a
 * float32 payload is in the server's float byte order. When codec is not NONE the payload is
 * the zlib or lz4 compression of those bytes and VARSIZE says how long it is; every function
 * that reads pixels decodes it first (ImgTensorDecode), so compression is invisible in SQL.
 */
typedef struct ImgTensor
{
	int32		vl_len_;		/* varlena header (do not touch directly!) */
	uint8		magic;			/* IMGTENSOR_MAGIC */
	uint8		version;		/* IMGTENSOR_VERSION */
	uint8		dtype;			/* IMGTENSOR_UINT8 or IMGTENSOR_FLOAT32 */
	uint8		codec;			/* IMGTENSOR_CODEC_NONE, _ZLIB or _LZ4 */
	int32		height;
	int32		width;
	int32		channels;
	int32		reserved;		/* must be 0 */
	uint8		data[FLEXIBLE_ARRAY_MEMBER];	/* (H, W, C) elements, maybe compressed */
} ImgTensor;

#define IMGTENSOR_HEADER_SIZE offsetof(ImgTensor, data)
#define IMGTENSOR_SIZE(payload_bytes) (IMGTENSOR_HEADER_SIZE + (payload_bytes))

/* Detoasted (maybe still compressed by our codec) values. */
#define DatumGetImgTensorP(x)		((ImgTensor *) PG_DETOAST_DATUM(x))
#define PG_GETARG_IMGTENSOR_P(n)	DatumGetImgTensorP(PG_GETARG_DATUM(n))
#define PG_RETURN_IMGTENSOR_P(x)	PG_RETURN_POINTER(x)

/* Only the header of a (possibly toasted) value: fetches the first TOAST chunk at most. */
#define DatumGetImgTensorHeaderP(x) \
	((ImgTensor *) PG_DETOAST_DATUM_SLICE(x, 0, IMGTENSOR_HEADER_SIZE - VARHDRSZ))
#define PG_GETARG_IMGTENSOR_HEADER_P(n) DatumGetImgTensorHeaderP(PG_GETARG_DATUM(n))

/* Bytes per element of a dtype (1 or 4); 0 for an unknown dtype. */
extern int	ImgTensorElementSize(int dtype);

/* "uint8" / "float32" / "none" / "zlib" / "lz4" ("?" for an unknown code). */
extern const char *ImgTensorDtypeName(int dtype);
extern const char *ImgTensorCodecName(int codec);

/*
 * Payload bytes of an uncompressed H×W×C value of dtype, after checking the shape is within
 * 1..IMGTENSOR_MAX_SIDE / 1..IMGTENSOR_MAX_CHANNELS and that the whole value fits in a
 * varlena; ereports (naming `what`, e.g. "imgtensor" or "resize") otherwise.
 */
extern Size ImgTensorCheckShape(const char *what, int dtype, int64 height, int64 width,
								int64 channels);

/* A new uncompressed value with the header filled in (shape already checked); the payload is
 * not initialised: the caller writes every byte of it. */
extern ImgTensor *ImgTensorCreate(int dtype, int32 height, int32 width, int32 channels);

/* The value with its payload decompressed: t itself when it is not compressed, otherwise a
 * new palloc'd value. Ereports if the compressed payload is corrupt. */
extern ImgTensor *ImgTensorDecode(ImgTensor *t);

/* Argument n detoasted, checked and decompressed. */
#define PG_GETARG_IMGTENSOR_DECODED(n) ImgTensorDecode(PG_GETARG_IMGTENSOR_P(n))

/* Decompress t's payload straight into dst (exactly its uncompressed payload size). */
extern void ImgTensorDecodeInto(const ImgTensor *t, uint8 *dst, Size dst_bytes);

/* Uncompressed payload bytes of a value whose header is valid. */
extern Size ImgTensorPayloadBytes(const ImgTensor *t);

/* Check the header fields of a stored value (magic, version, dtype, codec, reserved, shape
 * and, for an uncompressed value, its length); ereports data_corrupted otherwise. */
extern void ImgTensorCheckStored(const ImgTensor *t);

/* Ereport unless the value's shape matches typmod (-1 accepts any shape). */
extern void ImgTensorCheckTypmod(const ImgTensor *t, int32 typmod);

/* Typmod packing of (H, W, C): ((H-1) << 16) | ((W-1) << 2) | (C-1). */
#define IMGTENSOR_TYPMOD(h, w, c) ((int32) ((((h) - 1) << 16) | (((w) - 1) << 2) | ((c) - 1)))
#define IMGTENSOR_TYPMOD_HEIGHT(t) ((((t) >> 16) & 0x3FFF) + 1)
#define IMGTENSOR_TYPMOD_WIDTH(t) ((((t) >> 2) & 0x3FFF) + 1)
#define IMGTENSOR_TYPMOD_CHANNELS(t) (((t) & 0x3) + 1)

/* Image operations on decoded values (imgops.c), also used by the batch functions. */

/*
 * Bilinear resampling of a (sh, sw, c) buffer of dtype to a virtual rh×rw image (half-pixel
 * centres, as OpenCV / PIL without antialiasing; uint8 results rounded and clamped), of which
 * only the dh×dw window starting at (top, left) is computed into dst. A plain resize is
 * rh = dh, rw = dw, top = left = 0.
 */
extern void ImgResizeWindow(int dtype, const uint8 *src, int sh, int sw, int c,
							int rh, int rw, int top, int left, uint8 *dst, int dh, int dw);

/* Copy the centred dh×dw window (top = (sh - dh) / 2 rounded down, same for left) of a
 * (sh, sw, c) buffer with elem_size-byte elements; dh <= sh, dw <= sw. */
extern void ImgCenterCrop(int elem_size, const uint8 *src, int sh, int sw, int c,
						  uint8 *dst, int dh, int dw);

/*
 * Scale so the image covers dh×dw (aspect kept: the side that needs the larger factor
 * reaches the target), then take the centred dh×dw window: torchvision's Resize + CenterCrop.
 * uint8: loaders/transform.c's transform_resize_crop (the client loader's pixels exactly);
 * float32: in one pass, without materialising the resized image. An image already dh×dw is
 * copied.
 */
extern void ImgResizeCrop(int dtype, const uint8 *src, int sh, int sw, int c,
						  uint8 *dst, int dh, int dw);

#endif
