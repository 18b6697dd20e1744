/* infer.c — in-database inference: models stored in imgset.models / imgset.model_chunks, a
 * per-backend cache of parsed models, and imgset_predict() & co. running the trainer's nn core
 * (model_inference, single-threaded, no allocation) on imgtensor values and packed batches. */
#include "postgres.h"

#include <math.h>

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/int.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "portability/instr_time.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "imgtensor.h"
#include "blas.h"
#include "../loaders/error.h"
#include "../loaders/transform.h"
#include "../trainer/nn/graph.h"
#include "../trainer/nn/metrics.h"
#include "../trainer/nn/nn.h"
#include "../trainer/nn/pass.h"
#include "../trainer/nn/safetensors.h"

/* Longest model name (the CHECK on imgset.models.name), plus the NUL. */
#define MODEL_KEY_SIZE 72
/* Largest group of images one model_inference() call evaluates in the batched forms, and the
 * most activation memory such a group may take. */
#define GROUP_MAX 1024
#define GROUP_MAX_BYTES ((Size) 2 << 30)
/* Most images in one batch value (imgset_batch's own limit). */
#define BATCH_MAX_IMAGES (1 << 20)
#define SHA256_BYTES 32

/*
 * A parsed model in this backend's cache. It is used only while the visible row of
 * imgset.models still has the same (table, version, xmin): replacing a model (add_model with
 * replace => true bumps version; any UPDATE of the row changes xmin) is seen by the next call
 * of every session, whose snapshot shows the new row.
 */
typedef struct CachedModel
{
	char		name[MODEL_KEY_SIZE];	/* hash key */
	Oid			relid;			/* the imgset.models table the row came from */
	int64		version;
	TransactionId xmin;
	MemoryContext context;		/* everything below lives here */
	ModelGraph *graph;
	float	   *params;			/* (graph->param_floats) */
	char	  **class_names;	/* (classes) from the row */
	float	   *input;			/* (C, H, W): one image, normalised */
	float	   *workspace;		/* model_inference_workspace_floats(graph, 1) */
	float	   *logits;			/* (K) */
	Size		bytes;			/* memory held by context */
	double		load_ms;		/* reading, checking and parsing the checkpoint */
	int64		calls;			/* inference calls served */
	uint64		last_use;		/* LRU clock */
} CachedModel;

/* Memory the parsed models of a backend may hold (imgset.model_cache_size, kB); the least
 * recently used go first. */
static int	model_cache_size_kb = 256 * 1024;

static HTAB *model_cache = NULL;
static MemoryContext model_cache_context = NULL;
static uint64 model_cache_clock = 0;

/* The metadata row of a model, as read under the caller's snapshot. */
typedef struct ModelRow
{
	Oid			relid;
	int64		version;
	TransactionId xmin;
	/* Filled only when asked for (loading): */
	ModelSpec	spec;
	int64		bytes;
	int32		chunks;
	uint8		sha256[SHA256_BYTES];
	char	  **class_names;	/* (spec.classes), palloc'd */
} ModelRow;

/* A checkpoint parsed and checked: its spec, graph, weights and class names (all palloc'd). */
typedef struct ParsedCheckpoint
{
	ModelSpec	spec;
	TrainState	state;
	ModelGraph *graph;
	float	   *params;			/* (graph->param_floats) */
	const char **class_names;	/* (classes), or NULL when the file has none */
} ParsedCheckpoint;

/* The images of a batch value: n images of dtype, image i at pixels + offsets[i]. */
typedef struct BatchImages
{
	int			n;
	int			dtype;
	const uint8 *pixels;
	Size	   *offsets;		/* (n) */
	int32	   *shapes;			/* (n, 3) */
} BatchImages;

/* The module's settings for inference (called by _PG_init). */
void
ImgsetInferInit(void)
{
	DefineCustomIntVariable("imgset.model_cache_size",
							"Memory each backend may keep parsed models in.",
							"Beyond this much, the least recently used models are dropped; a "
							"model larger than all of it is parsed again for every call.",
							&model_cache_size_kb, 256 * 1024, 0, MAX_KILOBYTES, PGC_SUSET,
							GUC_UNIT_KB, NULL, NULL, NULL);
}

/* ---- Reading the model tables with the caller's privileges -------------------------------- */

/* The OID of table `name` in the schema of the function being called (the extension's). */
static Oid
ExtensionTable(FunctionCallInfo fcinfo, const char *name)
{
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("pg_imgset: table %s.%s does not exist", get_namespace_name(nsp), name)));
	return relid;
}

/* Ereport unless the caller may SELECT the table and no row-level security applies to it. */
static void
CheckReadable(Oid relid)
{
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(relid));
	/* Direct index reads would bypass row-level security policies: refuse instead. */
	if (check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pg_imgset: table \"%s\" has row-level security enabled",
						get_rel_name(relid)),
				 errdetail("Models are read directly and policies cannot be applied.")));
}

/* Attribute number of column `name` of type `type` in rel; ereports when there is none. */
static AttrNumber
TableColumn(Relation rel, const char *name, Oid type)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0 &&
			att->atttypid == type)
			return att->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("pg_imgset: table \"%s\" has no column %s of type %s",
					RelationGetRelationName(rel), name, format_type_be(type))));
	return InvalidAttrNumber;	/* keep the compiler quiet */
}

/* Begin a scan of rel's primary key for rows whose first key column equals key (text). */
static IndexScanDesc
PrimaryKeyScan(Relation rel, Relation *index, const char *key)
{
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	ScanKeyData skey;
	IndexScanDesc scan;

	if (!OidIsValid(pk))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_imgset: table \"%s\" has no primary key",
						RelationGetRelationName(rel))));
	*index = index_open(pk, AccessShareLock);
	ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(key));
	skey.sk_collation = (*index)->rd_indcollation[0];
	scan = index_beginscan(rel, *index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	return scan;
}

/* The int4 / int8 / text column att of the slot's row (NOT NULL columns). */
static Datum
RowValue(TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);

	if (isnull)
		elog(ERROR, "pg_imgset: NULL in a NOT NULL column of imgset.models");
	return d;
}

/*
 * Find model `name` in imgset.models under the active snapshot. False when there is no such
 * row. With `full`, also the spec, size, chunk count, checksum and class names.
 */
static bool
ModelRowFind(FunctionCallInfo fcinfo, const char *name, bool full, ModelRow *row)
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		found;

	memset(row, 0, sizeof(*row));
	row->relid = ExtensionTable(fcinfo, "models");
	CheckReadable(row->relid);
	rel = table_open(row->relid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = PrimaryKeyScan(rel, &index, name);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		bool		isnull;

		row->version = DatumGetInt64(RowValue(slot, TableColumn(rel, "version", INT8OID)));
		row->xmin = DatumGetTransactionId(slot_getsysattr(slot, MinTransactionIdAttributeNumber,
														  &isnull));
		if (full)
		{
			char	   *arch = TextDatumGetCString(RowValue(slot, TableColumn(rel, "arch", TEXTOID)));
			bytea	   *sha = DatumGetByteaPP(RowValue(slot, TableColumn(rel, "sha256", BYTEAOID)));
			ArrayType  *names = DatumGetArrayTypeP(RowValue(slot, TableColumn(rel, "class_names",
																			  TEXTARRAYOID)));
			Datum	   *elems;
			bool	   *nulls;
			int			count;

			strlcpy(row->spec.arch, arch, sizeof(row->spec.arch));
			row->spec.channels = DatumGetInt32(RowValue(slot, TableColumn(rel, "channels", INT4OID)));
			row->spec.height = DatumGetInt32(RowValue(slot, TableColumn(rel, "height", INT4OID)));
			row->spec.width = DatumGetInt32(RowValue(slot, TableColumn(rel, "width", INT4OID)));
			row->spec.classes = DatumGetInt32(RowValue(slot, TableColumn(rel, "classes", INT4OID)));
			row->bytes = DatumGetInt64(RowValue(slot, TableColumn(rel, "bytes", INT8OID)));
			row->chunks = DatumGetInt32(RowValue(slot, TableColumn(rel, "chunks", INT4OID)));
			if (VARSIZE_ANY_EXHDR(sha) != SHA256_BYTES)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("model \"%s\" has a sha256 of %zu bytes", name,
								VARSIZE_ANY_EXHDR(sha))));
			memcpy(row->sha256, VARDATA_ANY(sha), SHA256_BYTES);
			deconstruct_array(names, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &count);
			if (count != row->spec.classes || row->spec.classes < 1)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("model \"%s\" has %d class names for %d classes", name, count,
								row->spec.classes)));
			row->class_names = palloc(count * sizeof(char *));
			for (int i = 0; i < count; i++)
			{
				if (nulls[i])
					ereport(ERROR,
							(errcode(ERRCODE_DATA_CORRUPTED),
							 errmsg("model \"%s\" has a NULL class name", name)));
				row->class_names[i] = TextDatumGetCString(elems[i]);
			}
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return found;
}

/* Bytes hashed between two interrupt checks: a 1 GB checkpoint takes seconds to hash. */
#define HASH_PIECE ((Size) 4 << 20)

/*
 * Walk model `name`'s chunks in imgset.model_chunks (relid) in chunk_no order, checking their
 * numbering. With file NULL only their sizes are summed, from the values' headers (nothing is
 * fetched or decompressed); otherwise their bytes are copied to file and hashed into sha. The
 * walk stops with XX001 as soon as the chunks hold more than room bytes. Sets *count.
 */
static Size
WalkChunks(Oid relid, const char *name, uint8 *file, Size room, pg_cryptohash_ctx *sha,
		   int32 *count)
{
	Relation	rel = table_open(relid, AccessShareLock);
	AttrNumber	chunk_att = TableColumn(rel, "chunk_no", INT4OID);
	AttrNumber	data_att = TableColumn(rel, "data", BYTEAOID);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Relation	index;
	IndexScanDesc scan = PrimaryKeyScan(rel, &index, name);
	Size		used = 0;

	*count = 0;
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		int32		chunk_no = DatumGetInt32(RowValue(slot, chunk_att));
		Datum		raw = RowValue(slot, data_att);
		Size		len = toast_raw_datum_size(raw) - VARHDRSZ;

		CHECK_FOR_INTERRUPTS();
		if (chunk_no != *count)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("model \"%s\" is corrupt: chunk %d is missing", name, *count)));
		if (len > room - used)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("model \"%s\" is corrupt: its chunks hold more than its %zu bytes",
							name, room)));
		if (file)
		{
			bytea	   *data = DatumGetByteaPP(raw);

			memcpy(file + used, VARDATA_ANY(data), len);
			for (Size done = 0; done < len; done += HASH_PIECE)
			{
				CHECK_FOR_INTERRUPTS();
				if (pg_cryptohash_update(sha, file + used + done, Min(HASH_PIECE, len - done)) < 0)
					elog(ERROR, "pg_imgset: could not compute a SHA-256 digest");
			}
			if ((Pointer) data != DatumGetPointer(raw))
				pfree(data);	/* a detoasted copy: keep memory at one chunk */
		}
		used += len;
		(*count)++;
		ExecClearTuple(slot);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return used;
}

/*
 * The checkpoint of model `name`: its chunks from imgset.model_chunks, in order, checked
 * against the row's chunk count, size and sha256. The row's size is believed only once the
 * chunks' own sizes add up to it: nothing is allocated for a size the chunks do not hold.
 * Returns a palloc'd buffer of row->bytes.
 */
static uint8 *
ReadCheckpointChunks(FunctionCallInfo fcinfo, const char *name, const ModelRow *row)
{
	Oid			relid = ExtensionTable(fcinfo, "model_chunks");
	uint8	   *file;
	Size		used;
	int32		count;
	uint8		digest[SHA256_BYTES];
	pg_cryptohash_ctx *sha;

	CheckReadable(relid);
	if (row->bytes < 1 || (uint64) row->bytes > MaxAllocHugeSize || row->chunks < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("model \"%s\" has an impossible size of " INT64_FORMAT " bytes in %d chunks",
						name, row->bytes, row->chunks)));
	used = WalkChunks(relid, name, NULL, (Size) row->bytes, NULL, &count);
	if (count != row->chunks || used != (Size) row->bytes)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("model \"%s\" is corrupt: %d chunks of %zu bytes, expected %d chunks of "
						INT64_FORMAT " bytes", name, count, used, row->chunks, row->bytes)));

	file = palloc_extended(used, MCXT_ALLOC_HUGE);
	sha = pg_cryptohash_create(PG_SHA256);
	if (sha == NULL || pg_cryptohash_init(sha) < 0)
		elog(ERROR, "pg_imgset: could not compute a SHA-256 digest");
	if (WalkChunks(relid, name, file, used, sha, &count) != used || count != row->chunks)
		elog(ERROR, "pg_imgset: the chunks of model \"%s\" changed under one snapshot", name);
	if (pg_cryptohash_final(sha, digest, sizeof(digest)) < 0)
		elog(ERROR, "pg_imgset: could not compute a SHA-256 digest");
	pg_cryptohash_free(sha);
	if (memcmp(digest, row->sha256, SHA256_BYTES) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("model \"%s\" is corrupt: its checkpoint does not match its sha256", name)));
	return file;
}

/* ---- Checkpoints ----------------------------------------------------------------------- */

/* 1 when arch is one of the nn core's architectures. */
static bool
KnownArch(const char *arch)
{
	for (const char *const *a = model_arch_names(); *a; a++)
		if (strcmp(*a, arch) == 0)
			return true;
	return false;
}

/* "mlp, cnn-small, ..." */
static char *
ArchList(void)
{
	StringInfoData s;

	initStringInfo(&s);
	for (const char *const *a = model_arch_names(); *a; a++)
		appendStringInfo(&s, "%s%s", s.len ? ", " : "", *a);
	return s.data;
}

/*
 * Parse and check a checkpoint file of len bytes with the nn core's allocation-free parser:
 * safetensors layout, pg_imgset metadata, a known architecture for 1..4 channels, and every
 * tensor of its graph present with the right dtype and shape. Ereports 22P03 for a malformed
 * or inconsistent file, 22023 for an architecture or shape the nn core does not build.
 */
static void
ParseCheckpoint(const char *function, const uint8 *file, Size len, ParsedCheckpoint *out)
{
	Safetensors st;
	void	   *arena;
	Size		arena_len = safetensors_arena_size(file, len);
	const char *json;
	uint64		seed;
	Size		param_bytes;
	size_t		workspace;

	memset(out, 0, sizeof(*out));
	arena = palloc(arena_len);
	if (safetensors_parse(&st, file, len, arena, arena_len, "checkpoint") < 0 ||
		checkpoint_read_info(&st, &out->spec, &seed, &out->state, "checkpoint") < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("%s: invalid checkpoint", function),
				 errdetail("%s", ImgsetLibraryError())));
	if (!KnownArch(out->spec.arch))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: unknown architecture \"%s\"", function, out->spec.arch),
				 errdetail("The nn core builds %s.", ArchList())));
	if (out->spec.channels < 1 || out->spec.channels > IMGTENSOR_MAX_CHANNELS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: the checkpoint's model takes %d channels, an imgtensor has 1 to %d",
						function, out->spec.channels, IMGTENSOR_MAX_CHANNELS)));
	out->graph = palloc0(sizeof(ModelGraph));
	if (model_graph_build(out->graph, &out->spec) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: cannot build model %s for %dx%dx%d input and %d classes", function,
						out->spec.arch, out->spec.height, out->spec.width, out->spec.channels,
						out->spec.classes),
				 errdetail("%s", ImgsetLibraryError())));
	if (pg_mul_size_overflow(out->graph->param_floats, sizeof(float), &param_bytes) ||
		param_bytes > MaxAllocHugeSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: the model's weights are too large", function)));
	/* An input size the weights allow (batch-norm nets pool globally) may still need more
	 * activation memory than a backend should take for one image: refuse it here. */
	workspace = model_inference_workspace_floats(out->graph, 1);
	if (workspace == 0 || workspace > MaxAllocSize / sizeof(float))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: model %s for %dx%dx%d input needs more than 1 GB of activations per image",
						function, out->spec.arch, out->spec.height, out->spec.width,
						out->spec.channels)));
	out->params = palloc_extended(Max(param_bytes, 1), MCXT_ALLOC_HUGE);
	if (checkpoint_read_tensors(&st, out->graph, out->params, NULL, "checkpoint") < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("%s: the checkpoint does not fit model %s for %dx%dx%d input and %d classes",
						function, out->spec.arch, out->spec.height, out->spec.width,
						out->spec.channels, out->spec.classes),
				 errdetail("%s", ImgsetLibraryError())));
	json = safetensors_meta(&st, "class_names");
	if (json)
	{
		Size		cap = strlen(json) + 1;
		char	   *buf = palloc(cap);

		out->class_names = palloc(out->spec.classes * sizeof(char *));
		if (checkpoint_decode_class_names(json, buf, cap, out->class_names, out->spec.classes,
										  "checkpoint") < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("%s: invalid checkpoint", function),
					 errdetail("%s", ImgsetLibraryError())));
		for (int i = 0; i < out->spec.classes; i++)
			if (pg_verify_mbstr(GetDatabaseEncoding(), out->class_names[i],
								strlen(out->class_names[i]), true) == false)
				ereport(ERROR,
						(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
						 errmsg("%s: class name %d is not valid in the database encoding",
								function, i)));
	}
	pfree(arena);
}

/* ---- The per-backend model cache --------------------------------------------------------- */

/* Create the cache on first use. */
static void
ModelCacheInit(void)
{
	HASHCTL		ctl;

	if (model_cache)
		return;
	model_cache_context = AllocSetContextCreate(TopMemoryContext, "imgset model cache",
												ALLOCSET_SMALL_SIZES);
	ctl.keysize = MODEL_KEY_SIZE;
	ctl.entrysize = sizeof(CachedModel);
	ctl.hcxt = model_cache_context;
	model_cache = hash_create("imgset model cache", 16, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/* Drop an entry and the memory it holds. */
static void
ModelCacheRemove(CachedModel *entry)
{
	MemoryContextDelete(entry->context);
	hash_search(model_cache, entry->name, HASH_REMOVE, NULL);
}

/*
 * Keep the parsed models within imgset.model_cache_size: drop the least recently used ones
 * other than keep while they hold more. A model larger than the whole bound stays for the
 * call that loaded it and goes at the next call's trim.
 */
static void
ModelCacheTrim(const CachedModel *keep)
{
	Size		budget = (Size) model_cache_size_kb * 1024;

	for (;;)
	{
		HASH_SEQ_STATUS status;
		CachedModel *entry;
		CachedModel *oldest = NULL;
		Size		total = 0;

		hash_seq_init(&status, model_cache);
		while ((entry = hash_seq_search(&status)) != NULL)
		{
			total += entry->bytes;
			if (entry != keep && (oldest == NULL || entry->last_use < oldest->last_use))
				oldest = entry;
		}
		if (total <= budget || oldest == NULL)
			return;
		ModelCacheRemove(oldest);
	}
}

/*
 * Read, check and parse model `name` into a memory context of its own, and enter it in the
 * cache — only once everything succeeded: an error leaves no entry, and the half-built
 * context goes with the failed call's memory.
 */
static CachedModel *
ModelLoad(FunctionCallInfo fcinfo, const char *function, const char *name)
{
	ModelRow	row;
	MemoryContext context;
	MemoryContext old;
	ParsedCheckpoint ck;
	uint8	   *file;
	size_t		ws;
	float	   *input;
	float	   *workspace;
	float	   *logits;
	CachedModel *entry;
	instr_time	start;
	instr_time	duration;

	INSTR_TIME_SET_CURRENT(start);
	ImgsetBlasLoad();
	context = AllocSetContextCreate(CurrentMemoryContext, "imgset model", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(context);
	if (!ModelRowFind(fcinfo, name, true, &row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s: model \"%s\" does not exist", function, name)));
	file = ReadCheckpointChunks(fcinfo, name, &row);
	ParseCheckpoint(function, file, (Size) row.bytes, &ck);
	pfree(file);
	if (strcmp(ck.spec.arch, row.spec.arch) != 0 || ck.spec.channels != row.spec.channels ||
		ck.spec.height != row.spec.height || ck.spec.width != row.spec.width ||
		ck.spec.classes != row.spec.classes)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("model \"%s\" is corrupt: its row says %s for %dx%dx%d, %d classes; its "
						"checkpoint holds %s for %dx%dx%d, %d classes", name, row.spec.arch,
						row.spec.height, row.spec.width, row.spec.channels, row.spec.classes,
						ck.spec.arch, ck.spec.height, ck.spec.width, ck.spec.channels,
						ck.spec.classes)));
	ws = model_inference_workspace_floats(ck.graph, 1);
	input = palloc_extended(ck.graph->acts[0].size * sizeof(float), MCXT_ALLOC_HUGE);
	workspace = palloc_extended(ws * sizeof(float), MCXT_ALLOC_HUGE);
	logits = palloc(ck.spec.classes * sizeof(float));
	MemoryContextSwitchTo(old);

	/* Success: only now does the model enter the cache (nothing below can fail). */
	entry = hash_search(model_cache, name, HASH_ENTER, NULL);
	MemoryContextSetParent(context, model_cache_context);
	entry->context = context;
	entry->relid = row.relid;
	entry->version = row.version;
	entry->xmin = row.xmin;
	entry->graph = ck.graph;
	entry->params = ck.params;
	entry->class_names = row.class_names;
	entry->input = input;
	entry->workspace = workspace;
	entry->logits = logits;
	entry->bytes = MemoryContextMemAllocated(context, true);
	entry->calls = 0;
	entry->last_use = 0;
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	entry->load_ms = INSTR_TIME_GET_MILLISEC(duration);
	return entry;
}

/*
 * The model called `name` (text argument), parsed, for a call of `function`: checks the
 * caller may read the model tables, finds the row under the caller's snapshot, and loads it
 * unless this backend holds that very version. Ereports 42704 for an unknown name.
 */
static CachedModel *
ModelGet(FunctionCallInfo fcinfo, const char *function, text *name_text)
{
	char	   *name = text_to_cstring(name_text);
	ModelRow	row;
	CachedModel *entry;

	/* Privileges on both tables every time: the cache must not lend a model to a role that
	 * could not read it. */
	CheckReadable(ExtensionTable(fcinfo, "model_chunks"));
	if (strlen(name) >= MODEL_KEY_SIZE || !ModelRowFind(fcinfo, name, false, &row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s: model \"%s\" does not exist", function, name),
				 errhint("Add it with imgset.add_model() or imgset model push.")));
	ModelCacheInit();
	ModelCacheTrim(NULL);		/* a smaller bound, or last call's oversized model */
	entry = hash_search(model_cache, name, HASH_FIND, NULL);
	if (entry && (entry->relid != row.relid || entry->version != row.version ||
				  !TransactionIdEquals(entry->xmin, row.xmin)))
	{
		/* Another version: its memory goes before the new one is read. */
		ModelCacheRemove(entry);
		entry = NULL;
	}
	if (entry == NULL)
	{
		entry = ModelLoad(fcinfo, function, name);
		ModelCacheTrim(entry);
	}
	entry->last_use = ++model_cache_clock;
	entry->calls++;
	pfree(name);
	return entry;
}

/* ---- Images to the model's input ---------------------------------------------------------- */

/*
 * Write one image (H×W×C channels-last, dtype) as the model's normalised (C, H, W) input,
 * exactly as the trainer's loader does: uint8 images of another size are resized and
 * center-cropped with transform_resize_crop(), then normalised by transform_to_float() with
 * the mean and std the checkpoint records (0.5 and 0.5 in version 1 files). float32 images
 * are taken as already normalised and must have the model's size. A channel count other than
 * the model's is an error.
 */
static void
ImageToInput(const char *function, const CachedModel *m, int dtype, const uint8 *pixels,
			 int32 height, int32 width, int32 channels, float *dst)
{
	const ModelSpec *spec = &m->graph->spec;

	if (channels != spec->channels)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s: the image has %d channel%s, model \"%s\" takes %d", function,
						channels, channels == 1 ? "" : "s", m->name, spec->channels)));
	if (dtype == IMGTENSOR_FLOAT32)
	{
		Size		plane = (Size) spec->height * spec->width;

		if (height != spec->height || width != spec->width)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s: the float32 image is %dx%d, model \"%s\" takes %dx%d", function,
							height, width, m->name, spec->height, spec->width),
					 errdetail("float32 images are used as they are (already normalised); "
							   "resize them first, or pass uint8 images.")));
		for (Size p = 0; p < plane; p++)
			for (int k = 0; k < channels; k++)
			{
				uint32		bits;

				memcpy(&bits, pixels + 4 * (p * channels + k), 4);
#ifdef WORDS_BIGENDIAN
				bits = pg_bswap32(bits);
#endif
				memcpy(dst + k * plane + p, &bits, 4);
			}
		return;
	}
	if (height == spec->height && width == spec->width)
	{
		transform_to_float(dst, pixels, 1, height, width, channels, spec->mean, spec->std);
		return;
	}
	{
		ImageShape	shape = {height, width, channels};
		size_t		scratch_bytes = transform_resize_crop_scratch(shape, spec->height, spec->width);
		uint8	   *scratch;
		uint8	   *resized;

		/* The loader scales the whole image before cropping: a very thin image scaled to
		 * cover the model's input could ask for more than a backend should allocate. */
		if (scratch_bytes > MaxAllocSize)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("%s: scaling a %dx%d image to cover %dx%d needs more than 1 GB",
							function, height, width, spec->height, spec->width)));
		scratch = palloc(Max(scratch_bytes, 1));
		resized = palloc((Size) spec->height * spec->width * channels);
		transform_resize_crop(resized, spec->height, spec->width, pixels, shape, scratch);
		transform_to_float(dst, resized, 1, spec->height, spec->width, channels, spec->mean,
						   spec->std);
		pfree(resized);
		pfree(scratch);
	}
}

/* Logits (K) of model m for the imgtensor argument argno, in m->logits. */
static float *
ForwardOne(FunctionCallInfo fcinfo, const char *function, CachedModel *m, int argno)
{
	ImgTensor  *t = PG_GETARG_IMGTENSOR_DECODED(argno);

	CHECK_FOR_INTERRUPTS();
	ImageToInput(function, m, t->dtype, t->data, t->height, t->width, t->channels, m->input);
	model_inference(m->graph, m->params, m->input, 1, m->workspace, m->logits);
	return m->logits;
}

/* A real[] of n floats. */
static ArrayType *
FloatArray(const float *values, int n)
{
	Datum	   *elems = palloc(n * sizeof(Datum));

	for (int i = 0; i < n; i++)
		elems[i] = Float4GetDatum(values[i]);
	return construct_array(elems, n, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT);
}

/* imgset_predict(model text, img imgtensor) → the class index (argmax of the logits). */
PG_FUNCTION_INFO_V1(imgset_predict);
Datum
imgset_predict(PG_FUNCTION_ARGS)
{
	CachedModel *m = ModelGet(fcinfo, "imgset_predict", PG_GETARG_TEXT_PP(0));
	float	   *logits = ForwardOne(fcinfo, "imgset_predict", m, 1);

	PG_RETURN_INT32(metrics_argmax(logits, m->graph->spec.classes));
}

/* imgset_predict_label(model text, img imgtensor) → the class name. */
PG_FUNCTION_INFO_V1(imgset_predict_label);
Datum
imgset_predict_label(PG_FUNCTION_ARGS)
{
	CachedModel *m = ModelGet(fcinfo, "imgset_predict_label", PG_GETARG_TEXT_PP(0));
	float	   *logits = ForwardOne(fcinfo, "imgset_predict_label", m, 1);

	PG_RETURN_TEXT_P(cstring_to_text(m->class_names[metrics_argmax(logits,
																	m->graph->spec.classes)]));
}

/* imgset_forward(model text, img imgtensor) → the logits, real[K]. */
PG_FUNCTION_INFO_V1(imgset_forward);
Datum
imgset_forward(PG_FUNCTION_ARGS)
{
	CachedModel *m = ModelGet(fcinfo, "imgset_forward", PG_GETARG_TEXT_PP(0));
	float	   *logits = ForwardOne(fcinfo, "imgset_forward", m, 1);

	PG_RETURN_ARRAYTYPE_P(FloatArray(logits, m->graph->spec.classes));
}

/* imgset_proba(model text, img imgtensor) → the softmax of the logits, real[K]. */
PG_FUNCTION_INFO_V1(imgset_proba);
Datum
imgset_proba(PG_FUNCTION_ARGS)
{
	CachedModel *m = ModelGet(fcinfo, "imgset_proba", PG_GETARG_TEXT_PP(0));
	float	   *logits = ForwardOne(fcinfo, "imgset_proba", m, 1);
	int			K = m->graph->spec.classes;
	float	   *proba = palloc(K * sizeof(float));

	softmax_forward(proba, logits, 1, K);
	PG_RETURN_ARRAYTYPE_P(FloatArray(proba, K));
}

/* ---- Batches ------------------------------------------------------------------------------ */

/* Ereport a malformed packed batch. */
static void
BadPacked(const char *function, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("%s: malformed packed batch", function),
			 errdetail("%s", detail)));
}

/* Ereport unless (h, w, c) is a valid image shape. */
static void
CheckBatchShape(const char *function, int64 h, int64 w, int64 c, int i)
{
	if (h < 1 || h > IMGTENSOR_MAX_SIDE || w < 1 || w > IMGTENSOR_MAX_SIDE ||
		c < 1 || c > IMGTENSOR_MAX_CHANNELS)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s: image %d of the batch has shape " INT64_FORMAT "x" INT64_FORMAT "x"
						INT64_FORMAT, function, i, h, w, c)));
}

/*
 * Fill b->offsets from b->shapes (n × 3) for images of element size esize, checking they
 * exactly cover pixel_bytes.
 */
static void
BatchOffsets(const char *function, BatchImages *b, Size esize, Size pixel_bytes, bool packed)
{
	Size		offset = 0;

	b->offsets = palloc(Max(b->n, 1) * sizeof(Size));
	for (int i = 0; i < b->n; i++)
	{
		int32	   *s = b->shapes + 3 * i;
		Size		bytes = (Size) s[0] * s[1] * s[2] * esize;	/* < 2^34: no overflow */

		CheckBatchShape(function, s[0], s[1], s[2], i);
		b->offsets[i] = offset;
		if (bytes > pixel_bytes - offset)
		{
			if (packed)
				BadPacked(function, "The images' shapes need more bytes than the pixels section has.");
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s: the batch's pixels are shorter than its shapes say", function)));
		}
		offset += bytes;
	}
	if (offset != pixel_bytes)
	{
		if (packed)
			BadPacked(function, "The pixels section is longer than the images' shapes say.");
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s: the batch's pixels are longer than its shapes say", function)));
	}
}

/* Every image shares (h, w, c): fill b->shapes with it. */
static void
BatchSameShape(BatchImages *b, int32 h, int32 w, int32 c)
{
	b->shapes = palloc(3 * Max(b->n, 1) * sizeof(int32));
	for (int i = 0; i < b->n; i++)
	{
		b->shapes[3 * i] = h;
		b->shapes[3 * i + 1] = w;
		b->shapes[3 * i + 2] = c;
	}
}

/* The images of a packed batch (imgset_batch_packed's bytea, imgtensor_wire.h), checked. */
static void
ParsePackedBatch(const char *function, bytea *packed, BatchImages *b)
{
	const uint8 *p = (const uint8 *) VARDATA_ANY(packed);
	Size		len = VARSIZE_ANY_EXHDR(packed);
	uint64		pixel_bytes;
	Size		tail;
	bool		ragged;
	int32		h,
				w,
				c;

	memset(b, 0, sizeof(*b));
	if (len < IMGBATCH_HEADER || memcmp(p, IMGBATCH_MAGIC, 4) != 0)
		BadPacked(function, "It does not start with the 32-byte IMGB header.");
	if (p[4] != IMGBATCH_VERSION)
		BadPacked(function, psprintf("Version %d, expected %d.", p[4], IMGBATCH_VERSION));
	if (p[5] != IMGTENSOR_UINT8 && p[5] != IMGTENSOR_FLOAT32)
		BadPacked(function, psprintf("Unknown dtype %d.", p[5]));
	if ((p[6] & ~IMGBATCH_RAGGED) != 0 || p[7] != 0)
		BadPacked(function, "Unknown flags or a non-zero reserved byte.");
	b->dtype = p[5];
	ragged = (p[6] & IMGBATCH_RAGGED) != 0;
	b->n = (int32) imgtensor_wire_get32(p + 8);
	if (b->n < 0 || b->n > BATCH_MAX_IMAGES)
		BadPacked(function, psprintf("%d images is out of range 0..%d.", b->n, BATCH_MAX_IMAGES));
	h = (int32) imgtensor_wire_get32(p + 12);
	w = (int32) imgtensor_wire_get32(p + 16);
	c = (int32) imgtensor_wire_get32(p + 20);
	pixel_bytes = ((uint64) imgtensor_wire_get32(p + 24) << 32) | imgtensor_wire_get32(p + 28);
	tail = (Size) b->n * (ragged ? 8 + 4 + 12 : 8 + 4);
	if (pixel_bytes > len - IMGBATCH_HEADER || len - IMGBATCH_HEADER - pixel_bytes != tail)
		BadPacked(function, psprintf("%zu bytes do not hold a header, " UINT64_FORMAT
									 " pixel bytes and %zu bytes of ids, labels and shapes.",
									 len, pixel_bytes, tail));
	b->pixels = p + IMGBATCH_HEADER;
	if (ragged)
	{
		const uint8 *s = p + IMGBATCH_HEADER + pixel_bytes + (Size) b->n * 12;

		if (h != 0 || w != 0 || c != 0)
			BadPacked(function, "A ragged batch has a zero shape in its header.");
		b->shapes = palloc(3 * Max(b->n, 1) * sizeof(int32));
		for (int i = 0; i < 3 * b->n; i++)
			b->shapes[i] = (int32) imgtensor_wire_get32(s + 4 * i);
	}
	else
	{
		if (b->n > 0)
			CheckBatchShape(function, h, w, c, 0);
		BatchSameShape(b, h, w, c);
	}
	BatchOffsets(function, b, ImgTensorElementSize(b->dtype), (Size) pixel_bytes, true);
}

/* The images of an imgset.batch composite, checked. */
static void
ParseCompositeBatch(const char *function, HeapTupleHeader tuple, BatchImages *b)
{
	bool		isnull[8];
	Datum		v[8];
	char	   *dtype;
	bytea	   *pixels;
	Size		esize;

	memset(b, 0, sizeof(*b));
	if (HeapTupleHeaderGetNatts(tuple) != 8)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s: a batch has 8 fields, this one %d", function,
						HeapTupleHeaderGetNatts(tuple))));
	for (int i = 0; i < 8; i++)
		v[i] = GetAttributeByNum(tuple, i + 1, &isnull[i]);
	if (isnull[6] || isnull[7])
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s: the batch's dtype and pixels must not be NULL", function)));
	dtype = TextDatumGetCString(v[6]);
	if (strcmp(dtype, "uint8") == 0)
		b->dtype = IMGTENSOR_UINT8;
	else if (strcmp(dtype, "float32") == 0)
		b->dtype = IMGTENSOR_FLOAT32;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: unknown dtype \"%s\" in the batch", function, dtype)));
	esize = ImgTensorElementSize(b->dtype);
	pixels = DatumGetByteaPP(v[7]);
	b->pixels = (const uint8 *) VARDATA_ANY(pixels);
	if (!isnull[5])
	{
		/* Ragged: shapes is an N × 3 integer array. */
		ArrayType  *shapes = DatumGetArrayTypeP(v[5]);

		if (ARR_NDIM(shapes) != 2 || ARR_DIMS(shapes)[1] != 3 || array_contains_nulls(shapes) ||
			ARR_ELEMTYPE(shapes) != INT4OID)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s: the batch's shapes must be an N×3 integer array without NULLs",
							function)));
		b->n = ARR_DIMS(shapes)[0];
		if (b->n > BATCH_MAX_IMAGES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("%s: %d images is more than a batch may hold", function, b->n)));
		b->shapes = palloc(3 * Max(b->n, 1) * sizeof(int32));
		memcpy(b->shapes, ARR_DATA_PTR(shapes), 3 * b->n * sizeof(int32));
	}
	else
	{
		int32		h,
					w,
					c;
		Size		image_bytes;
		Size		len = VARSIZE_ANY_EXHDR(pixels);

		if (isnull[2] || isnull[3] || isnull[4])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s: a batch needs height, width and channels, or shapes", function)));
		h = DatumGetInt32(v[2]);
		w = DatumGetInt32(v[3]);
		c = DatumGetInt32(v[4]);
		CheckBatchShape(function, h, w, c, 0);
		image_bytes = (Size) h * w * c * esize;
		if (len % image_bytes != 0 || len / image_bytes > BATCH_MAX_IMAGES)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s: the batch's %zu pixel bytes are not a whole number of %dx%dx%d "
							"%s images", function, len, h, w, c, dtype)));
		b->n = (int) (len / image_bytes);
		BatchSameShape(b, h, w, c);
	}
	if (!isnull[0])
	{
		ArrayType  *ids = DatumGetArrayTypeP(v[0]);

		if (ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids)) != b->n)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("%s: the batch has %d ids for %d images", function,
							ArrayGetNItems(ARR_NDIM(ids), ARR_DIMS(ids)), b->n)));
	}
	BatchOffsets(function, b, esize, VARSIZE_ANY_EXHDR(pixels), false);
}

/*
 * Every image of the batch through model m, in consecutive groups of group_size images, one
 * model_inference() call per group: the logits are those of `imgset predict --batch
 * group_size` (and, with group_size 1, of imgset_forward on each image). They go to logits
 * (n, K) when it is not NULL; otherwise each image's class (the argmax) goes to classes (n)
 * and only one group's logits are ever held.
 */
static void
ForwardBatch(const char *function, CachedModel *m, const BatchImages *b, int32 group_size,
			 float *logits, int32 *classes)
{
	int			K = m->graph->spec.classes;
	int			group;
	Size		image_floats = m->graph->acts[0].size;
	float	   *input = m->input;
	float	   *workspace = m->workspace;
	float	   *group_logits = m->logits;
	Size		bytes;

	if (group_size < 1 || group_size > GROUP_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: group size %d is out of range 1..%d", function, group_size,
						GROUP_MAX)));
	group = Min(group_size, Max(b->n, 1));
	if (group > 1)
	{
		size_t		ws = model_inference_workspace_floats(m->graph, group);

		if (ws == 0 || ws > GROUP_MAX_BYTES / sizeof(float) ||
			pg_mul_size_overflow(image_floats * sizeof(float), (Size) group, &bytes) ||
			bytes > GROUP_MAX_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("%s: groups of %d images need too much memory", function, group),
					 errhint("Use a smaller group size.")));
		input = palloc_extended(bytes, MCXT_ALLOC_HUGE);
		workspace = palloc_extended(ws * sizeof(float), MCXT_ALLOC_HUGE);
		if (logits == NULL)
		{
			if (pg_mul_size_overflow((Size) group * K, sizeof(float), &bytes) ||
				bytes > GROUP_MAX_BYTES)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("%s: groups of %d images need too much memory for %d logits each",
								function, group, K),
						 errhint("Use a smaller group size.")));
			group_logits = palloc_extended(bytes, MCXT_ALLOC_HUGE);
		}
	}
	for (int g0 = 0; g0 < b->n; g0 += group)
	{
		int			count = Min(group, b->n - g0);
		float	   *out = logits ? logits + (Size) g0 * K : group_logits;

		for (int i = 0; i < count; i++)
		{
			const int32 *s = b->shapes + 3 * (g0 + i);

			CHECK_FOR_INTERRUPTS();
			ImageToInput(function, m, b->dtype, b->pixels + b->offsets[g0 + i], s[0], s[1], s[2],
						 input + (Size) i * image_floats);
		}
		/* The nn core checks for interrupts between its ops (ImgsetCheckInterrupts). */
		model_inference(m->graph, m->params, input, count, workspace, out);
		if (classes)
			for (int i = 0; i < count; i++)
				classes[g0 + i] = metrics_argmax(out + (Size) i * K, K);
	}
	if (input != m->input)
	{
		pfree(input);
		pfree(workspace);
	}
	if (group_logits != m->logits)
		pfree(group_logits);
}

/* The batch argument argno (packed bytea or imgset.batch composite). */
static void
BatchArgument(FunctionCallInfo fcinfo, const char *function, int argno, bool packed,
			  BatchImages *b)
{
	if (packed)
		ParsePackedBatch(function, PG_GETARG_BYTEA_PP(argno), b);
	else
		ParseCompositeBatch(function, PG_GETARG_HEAPTUPLEHEADER(argno), b);
}

/* imgset_predict_batch(model, batch, group_size) → integer[n] classes. */
static Datum
PredictBatch(FunctionCallInfo fcinfo, bool packed)
{
	const char *function = "imgset_predict_batch";
	CachedModel *m = ModelGet(fcinfo, function, PG_GETARG_TEXT_PP(0));
	BatchImages b;
	int32	   *classes;
	Datum	   *elems;

	BatchArgument(fcinfo, function, 1, packed, &b);
	classes = palloc(Max(b.n, 1) * sizeof(int32));
	ForwardBatch(function, m, &b, PG_GETARG_INT32(2), NULL, classes);
	elems = palloc(Max(b.n, 1) * sizeof(Datum));
	for (int i = 0; i < b.n; i++)
		elems[i] = Int32GetDatum(classes[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, b.n, INT4OID, 4, true, TYPALIGN_INT));
}

/*
 * imgset_forward_batch(model, batch, group_size) → real[n][K] logits, computed straight into
 * the result array, which is refused before the forward pass when it could not be returned.
 */
static Datum
ForwardBatchResult(FunctionCallInfo fcinfo, bool packed)
{
	const char *function = "imgset_forward_batch";
	CachedModel *m = ModelGet(fcinfo, function, PG_GETARG_TEXT_PP(0));
	int			K = m->graph->spec.classes;
	BatchImages b;
	ArrayType  *result;
	Size		count;
	Size		bytes;

	BatchArgument(fcinfo, function, 1, packed, &b);
	if (b.n == 0)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(FLOAT4OID));
	if (pg_mul_size_overflow((Size) b.n, (Size) K, &count) || count > MaxArraySize ||
		pg_mul_size_overflow(count, sizeof(float4), &bytes) ||
		pg_add_size_overflow(bytes, ARR_OVERHEAD_NONULLS(2), &bytes) || bytes > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s: %d images × %d logits do not fit in an array", function, b.n, K),
				 errhint("Ask for the classes with imgset_predict_batch, or pass fewer images.")));
	result = (ArrayType *) palloc0(bytes);
	SET_VARSIZE(result, bytes);
	result->ndim = 2;
	result->dataoffset = 0;
	result->elemtype = FLOAT4OID;
	ARR_DIMS(result)[0] = b.n;
	ARR_DIMS(result)[1] = K;
	ARR_LBOUND(result)[0] = 1;
	ARR_LBOUND(result)[1] = 1;
	ForwardBatch(function, m, &b, PG_GETARG_INT32(2), (float *) ARR_DATA_PTR(result), NULL);
	PG_RETURN_ARRAYTYPE_P(result);
}

PG_FUNCTION_INFO_V1(imgset_predict_batch_packed);
Datum
imgset_predict_batch_packed(PG_FUNCTION_ARGS)
{
	return PredictBatch(fcinfo, true);
}

PG_FUNCTION_INFO_V1(imgset_predict_batch_composite);
Datum
imgset_predict_batch_composite(PG_FUNCTION_ARGS)
{
	return PredictBatch(fcinfo, false);
}

PG_FUNCTION_INFO_V1(imgset_forward_batch_packed);
Datum
imgset_forward_batch_packed(PG_FUNCTION_ARGS)
{
	return ForwardBatchResult(fcinfo, true);
}

PG_FUNCTION_INFO_V1(imgset_forward_batch_composite);
Datum
imgset_forward_batch_composite(PG_FUNCTION_ARGS)
{
	return ForwardBatchResult(fcinfo, false);
}

/* ---- Checkpoint inspection and the cache's state ------------------------------------------ */

/*
 * checkpoint_info(checkpoint bytea) → (arch, channels, height, width, classes, class_names,
 * parameters, step): the checkpoint fully parsed and checked, as add_model() stores it.
 */
PG_FUNCTION_INFO_V1(imgset_checkpoint_info);
Datum
imgset_checkpoint_info(PG_FUNCTION_ARGS)
{
	bytea	   *file = PG_GETARG_BYTEA_PP(0);
	ParsedCheckpoint ck;
	TupleDesc	desc;
	Datum		values[8];
	bool		nulls[8] = {false};
	Datum	   *names;
	size_t		trainable = 0;

	ParseCheckpoint("checkpoint_info", (const uint8 *) VARDATA_ANY(file), VARSIZE_ANY_EXHDR(file),
					&ck);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "checkpoint_info: return type must be a row type");
	desc = BlessTupleDesc(desc);
	names = palloc(ck.spec.classes * sizeof(Datum));
	for (int i = 0; i < ck.spec.classes; i++)
		names[i] = ck.class_names ? CStringGetTextDatum(ck.class_names[i])
			: CStringGetTextDatum(psprintf("%d", i));
	for (int i = 0; i < ck.graph->num_tensors; i++)
		if (ck.graph->tensors[i].trainable)
			trainable += ck.graph->tensors[i].count;
	values[0] = CStringGetTextDatum(ck.spec.arch);
	values[1] = Int32GetDatum(ck.spec.channels);
	values[2] = Int32GetDatum(ck.spec.height);
	values[3] = Int32GetDatum(ck.spec.width);
	values[4] = Int32GetDatum(ck.spec.classes);
	values[5] = PointerGetDatum(construct_array(names, ck.spec.classes, TEXTOID, -1, false,
												TYPALIGN_INT));
	values[6] = Int64GetDatum((int64) trainable);
	values[7] = Int64GetDatum(ck.state.step);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* imgset_model_cache() → the models this backend holds, to a role that may read the model
 * tables: name, version, bytes, load_ms, calls, and the OpenBLAS kernel in use. */
PG_FUNCTION_INFO_V1(imgset_model_cache);
Datum
imgset_model_cache(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS status;
	CachedModel *entry;

	InitMaterializedSRF(fcinfo, 0);
	/* Only to a role that may read models: the cache must not tell which exist. */
	if (model_cache == NULL ||
		pg_class_aclcheck(ExtensionTable(fcinfo, "models"), GetUserId(), ACL_SELECT) != ACLCHECK_OK ||
		pg_class_aclcheck(ExtensionTable(fcinfo, "model_chunks"), GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		return (Datum) 0;
	hash_seq_init(&status, model_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		Datum		values[6];
		bool		nulls[6] = {false};

		values[0] = CStringGetTextDatum(entry->name);
		values[1] = Int64GetDatum(entry->version);
		values[2] = Int64GetDatum((int64) entry->bytes);
		values[3] = Float8GetDatum(entry->load_ms);
		values[4] = Int64GetDatum(entry->calls);
		values[5] = CStringGetTextDatum(ImgsetBlasCore());
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
