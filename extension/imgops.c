/* imgops.c — image operations on imgtensor values: bilinear resize, center crop, the two
 * together, and conversion to normalised float32. uint8 images are resized by the client
 * loader's own code (loaders/transform.c), so a batch resized in the server equals the one
 * the loader makes; float32 images, which the loader never resizes, by ImgResizeWindow. */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"

#include "imgtensor.h"
#include "../loaders/transform.h"

/* Source sample positions for one axis: index pairs and the weight of the second. */
typedef struct AxisTaps
{
	int		   *lo;				/* (n) */
	int		   *hi;				/* (n) */
	float	   *frac;			/* (n) weight of hi; lo gets 1 - frac */
} AxisTaps;

/* Taps for output coordinates start..start+n-1 of an axis resampled from src to dst cells. */
static AxisTaps
MakeTaps(int src, int dst, int start, int n)
{
	AxisTaps	taps;
	double		scale = (double) src / dst;

	taps.lo = palloc(n * sizeof(int));
	taps.hi = palloc(n * sizeof(int));
	taps.frac = palloc(n * sizeof(float));
	for (int i = 0; i < n; i++)
	{
		/* Half-pixel centres: output cell i covers source coordinate (i + 0.5) * scale. */
		double		x = ((double) (start + i) + 0.5) * scale - 0.5;
		int			x0;

		if (x < 0)
			x = 0;
		if (x > src - 1)
			x = src - 1;
		x0 = (int) floor(x);
		taps.lo[i] = x0;
		taps.hi[i] = x0 + 1 < src ? x0 + 1 : src - 1;
		taps.frac[i] = (float) (x - x0);
	}
	return taps;
}

static void
FreeTaps(AxisTaps *taps)
{
	pfree(taps->lo);
	pfree(taps->hi);
	pfree(taps->frac);
}

void
ImgResizeWindow(int dtype, const uint8 *src, int sh, int sw, int c,
				int rh, int rw, int top, int left, uint8 *dst, int dh, int dw)
{
	AxisTaps	ys = MakeTaps(sh, rh, top, dh);
	AxisTaps	xs = MakeTaps(sw, rw, left, dw);

	for (int y = 0; y < dh; y++)
	{
		float		fy = ys.frac[y];
		Size		row0 = (Size) ys.lo[y] * sw * c;
		Size		row1 = (Size) ys.hi[y] * sw * c;

		CHECK_FOR_INTERRUPTS();
		for (int x = 0; x < dw; x++)
		{
			float		fx = xs.frac[x];
			Size		col0 = (Size) xs.lo[x] * c;
			Size		col1 = (Size) xs.hi[x] * c;
			Size		out = ((Size) y * dw + x) * c;

			for (int k = 0; k < c; k++)
			{
				float		p00,
							p01,
							p10,
							p11,
							v;

				if (dtype == IMGTENSOR_UINT8)
				{
					p00 = src[row0 + col0 + k];
					p01 = src[row0 + col1 + k];
					p10 = src[row1 + col0 + k];
					p11 = src[row1 + col1 + k];
				}
				else
				{
					const float *f = (const float *) src;

					p00 = f[row0 + col0 + k];
					p01 = f[row0 + col1 + k];
					p10 = f[row1 + col0 + k];
					p11 = f[row1 + col1 + k];
				}
				v = (p00 * (1 - fx) + p01 * fx) * (1 - fy) + (p10 * (1 - fx) + p11 * fx) * fy;
				if (dtype == IMGTENSOR_UINT8)
				{
					v = floorf(v + 0.5f);
					dst[out + k] = v < 0 ? 0 : v > 255 ? 255 : (uint8) v;
				}
				else
					((float *) dst)[out + k] = v;
			}
		}
	}
	FreeTaps(&ys);
	FreeTaps(&xs);
}

void
ImgCenterCrop(int elem_size, const uint8 *src, int sh, int sw, int c,
			  uint8 *dst, int dh, int dw)
{
	int			top = (sh - dh) / 2;
	int			left = (sw - dw) / 2;
	Size		row_bytes = (Size) dw * c * elem_size;

	for (int y = 0; y < dh; y++)
	{
		CHECK_FOR_INTERRUPTS();
		memcpy(dst + (Size) y * row_bytes,
			   src + (((Size) (top + y) * sw + left) * c) * elem_size, row_bytes);
	}
}

void
ImgResizeCrop(int dtype, const uint8 *src, int sh, int sw, int c, uint8 *dst, int dh, int dw)
{
	double		scale = Max((double) dh / sh, (double) dw / sw);
	/* The resized image covers the target on both sides; rounding may not undercut it. */
	int			rh = Max(dh, (int) floor(sh * scale + 0.5));
	int			rw = Max(dw, (int) floor(sw * scale + 0.5));

	if (sh == dh && sw == dw)
		memcpy(dst, src, (Size) dh * dw * c * ImgTensorElementSize(dtype));
	else if (dtype == IMGTENSOR_UINT8)
	{
		ImageShape	shape = {sh, sw, c};
		uint8	   *scratch = palloc(transform_resize_crop_scratch(shape, dh, dw));

		transform_resize_crop(dst, dh, dw, src, shape, scratch);
		pfree(scratch);
	}
	else if (rh == sh && rw == sw)
		ImgCenterCrop(ImgTensorElementSize(dtype), src, sh, sw, c, dst, dh, dw);
	else
		ImgResizeWindow(dtype, src, sh, sw, c, rh, rw, (rh - dh) / 2, (rw - dw) / 2,
						dst, dh, dw);
}

/* How Reshape fills its height×width output from the input image. */
typedef enum ReshapeKind
{
	RESHAPE_RESIZE,				/* bilinear resize, aspect ratio not kept */
	RESHAPE_CENTER_CROP,		/* the centre window, unscaled; must fit in the image */
	RESHAPE_RESIZE_CROP			/* ImgResizeCrop: resize to cover, then the centre */
} ReshapeKind;

/* function(img imgtensor, height integer, width integer) → a height×width imgtensor. */
static Datum
Reshape(FunctionCallInfo fcinfo, const char *function, ReshapeKind kind)
{
	ImgTensor  *t = PG_GETARG_IMGTENSOR_DECODED(0);
	int32		h = PG_GETARG_INT32(1);
	int32		w = PG_GETARG_INT32(2);
	ImgTensor  *out;

	ImgTensorCheckShape(function, t->dtype, h, w, t->channels);
	if (kind == RESHAPE_CENTER_CROP && (h > t->height || w > t->width))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: a %dx%d crop does not fit in a %dx%d imgtensor",
						function, h, w, t->height, t->width)));
	out = ImgTensorCreate(t->dtype, h, w, t->channels);
	switch (kind)
	{
		case RESHAPE_RESIZE:
			if (t->dtype == IMGTENSOR_UINT8)
				transform_resize(out->data, h, w, t->data, t->height, t->width, t->channels);
			else
				ImgResizeWindow(t->dtype, t->data, t->height, t->width, t->channels, h, w,
								0, 0, out->data, h, w);
			break;
		case RESHAPE_CENTER_CROP:
			ImgCenterCrop(ImgTensorElementSize(t->dtype), t->data, t->height, t->width,
						  t->channels, out->data, h, w);
			break;
		case RESHAPE_RESIZE_CROP:
			ImgResizeCrop(t->dtype, t->data, t->height, t->width, t->channels, out->data, h, w);
			break;
	}
	PG_RETURN_IMGTENSOR_P(out);
}

PG_FUNCTION_INFO_V1(imgtensor_resize);
Datum
imgtensor_resize(PG_FUNCTION_ARGS)
{
	return Reshape(fcinfo, "resize", RESHAPE_RESIZE);
}

PG_FUNCTION_INFO_V1(imgtensor_center_crop);
Datum
imgtensor_center_crop(PG_FUNCTION_ARGS)
{
	return Reshape(fcinfo, "center_crop", RESHAPE_CENTER_CROP);
}

PG_FUNCTION_INFO_V1(imgtensor_resize_crop);
Datum
imgtensor_resize_crop(PG_FUNCTION_ARGS)
{
	return Reshape(fcinfo, "resize_crop", RESHAPE_RESIZE_CROP);
}

/* The elements of a 1-D real[] of 1 or `channels` non-NULL values, as `channels` floats. */
static void
PerChannel(ArrayType *a, const char *name, int channels, float *out)
{
	int			n = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	const float *v = (const float *) ARR_DATA_PTR(a);

	if (ARR_NDIM(a) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("to_float: %s must be a one-dimensional array", name)));
	if (n != 1 && n != channels)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("to_float: %s has %d elements, the imgtensor has %d channels",
						name, n, channels),
				 errdetail("Give one value per channel, or one value for all channels.")));
	if (array_contains_nulls(a))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("to_float: %s contains NULL", name)));
	for (int k = 0; k < channels; k++)
		out[k] = v[n == 1 ? 0 : k];
}

PG_FUNCTION_INFO_V1(imgtensor_to_float);
Datum
imgtensor_to_float(PG_FUNCTION_ARGS)
{
	ImgTensor  *t = PG_GETARG_IMGTENSOR_DECODED(0);
	float		mean[IMGTENSOR_MAX_CHANNELS];
	float		std[IMGTENSOR_MAX_CHANNELS];
	float		scale = t->dtype == IMGTENSOR_UINT8 ? 1.0f / 255.0f : 1.0f;
	Size		n = (Size) t->height * t->width * t->channels;
	ImgTensor  *out;
	float	   *dst;
	int			c = t->channels;

	PerChannel(PG_GETARG_ARRAYTYPE_P(1), "mean", c, mean);
	PerChannel(PG_GETARG_ARRAYTYPE_P(2), "std", c, std);
	for (int k = 0; k < c; k++)
		if (std[k] == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DIVISION_BY_ZERO),
					 errmsg("to_float: std of channel %d is zero", k + 1)));
	out = ImgTensorCreate(IMGTENSOR_FLOAT32, t->height, t->width, c);
	dst = (float *) out->data;
	for (Size i = 0; i < n; i++)
	{
		int			k = (int) (i % c);
		float		x = t->dtype == IMGTENSOR_UINT8 ? (float) t->data[i]
			: ((const float *) t->data)[i];

		if ((i & ((1 << 20) - 1)) == 0)
			CHECK_FOR_INTERRUPTS();
		dst[i] = (x * scale - mean[k]) / std[k];
	}
	PG_RETURN_IMGTENSOR_P(out);
}
