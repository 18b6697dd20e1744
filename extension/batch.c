/* batch.c — imgset_batch(): a whole mini-batch (labels + pixels packed N×H×W×C) in one call,
 * for a list of ids or for "batch b of epoch e under seed s" shuffled server-side with the
 * client's permutation (loaders/permute.c), read by direct index lookups on the split. */
#include "postgres.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/genam.h"
#include "access/heapam.h"
#include "access/itup.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/objectaddress.h"
#include "common/int.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "imgtensor.h"
#include "../loaders/error.h"
#include "../loaders/sampler.h"

/* Bytes of TIDs the per-backend cache keeps, over all splits (imgset.tid_cache_size, kB). */
static int	tid_cache_size_kb = 48 * 1024;

/* imgset.keep_batch_memory: backends that build batches keep freed memory (KeepBatchMemory). */
static bool keep_batch_memory = true;

/* The module's settings for batches (called by _PG_init). */
void
ImgsetBatchInit(void)
{
	DefineCustomIntVariable("imgset.tid_cache_size",
							"Memory each backend may use to remember where the rows of splits are.",
							"imgset_batch keeps a heap TID per id of the splits it reads; beyond "
							"this much, the least recently used split's are dropped.",
							&tid_cache_size_kb, 48 * 1024, 0, MAX_KILOBYTES, PGC_SUSET,
							GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomBoolVariable("imgset.keep_batch_memory",
							 "Lets a backend that builds batches keep freed memory for reuse.",
							 "With glibc, the first batch a backend builds raises its allocator's "
							 "mmap threshold to 32 MB and trim threshold to 256 MB, for the rest "
							 "of its life.",
							 &keep_batch_memory, true, PGC_SUSET, 0, NULL, NULL, NULL);
}

/*
 * Before a backend's first batch: keep freed memory in the process. A batch is one large
 * palloc (a 256-image cifar10 batch is 0.8 MB), and sending it costs two more of its size
 * (bytea's send copy and the row's buffer); glibc serves each with mmap and unmaps it on free,
 * so every call page-faults its memory in afresh. With the mmap threshold at glibc's own upper
 * bound (32 MB) and a trim threshold of 256 MB such blocks are reused from the heap; larger
 * ones still come and go with mmap. This changes the allocator of the whole process, so it
 * is done only in backends that build batches, and only while imgset.keep_batch_memory is on
 * (the README has the numbers: nothing narrower kept the speed).
 */
static void
KeepBatchMemory(void)
{
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD)
	static bool done = false;

	if (done || !keep_batch_memory)
		return;
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
	done = true;
#endif
}

/* Most images one call may ask for (the pixels are further limited to 1 GB). */
#define BATCH_MAX_IMAGES (1 << 20)
#define BATCH_PRESIZE_MAX ((Size) 64 << 20)

/* Splits up to this many ids get the whole cache filled from the index on first use. */
#define TID_CACHE_PREWARM_MAX_IDS (256 << 10)

/* The storage a relation's TIDs point into (its relfilenode). */
#if PG_VERSION_NUM >= 160000
#define RelationStorage(rel) ((rel)->rd_locator.relNumber)
typedef RelFileNumber StorageNumber;
#else
#define RelationStorage(rel) ((rel)->rd_node.relNode)
typedef Oid StorageNumber;
#endif

/*
 * Per-backend cache of where each id's row is: tids[id] is the heap TID the unique index on
 * id pointed to when we last looked it up. A cached TID is only a hint: the row is fetched
 * through it with the query's snapshot (following a HOT chain) and used only if it is visible
 * and has that id — with a unique index at most one visible row has a given id, so a hit is
 * exactly what the index lookup would find. Anything else falls back to the index.
 *
 * Memory is bounded twice: a split's array never has more slots than the split can have rows
 * (its pages × MaxHeapTuplesPerPage: a few rows with large ids do not make it large), and all
 * arrays together stay within imgset.tid_cache_size, the least recently used split's dropped
 * first. Relcache invalidation (DDL, TRUNCATE, VACUUM FULL, DROP) marks an entry stale; stale
 * entries are freed when the next split is opened.
 */
typedef struct TidCacheEntry
{
	Oid			relid;			/* hash key */
	StorageNumber storage;		/* the relfilenode the TIDs point into */
	bool		stale;
	bool		prewarmed;		/* filled from the index once (or found too large to) */
	int64		limit;			/* most slots: the split's pages × MaxHeapTuplesPerPage */
	int64		size;			/* slots in tids */
	uint64		last_use;		/* LRU clock */
	ItemPointerData *tids;		/* (size) TID of id i; invalid when not known */
} TidCacheEntry;

static HTAB *tid_cache = NULL;
static MemoryContext tid_cache_context = NULL;
static Size tid_cache_bytes = 0;	/* of all entries' tids */
static uint64 tid_cache_clock = 0;

/* An open split: the table, its btree index on id, and a reusable index scan. */
typedef struct SplitReader
{
	Oid			relid;
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	IndexFetchTableData *fetch;	/* for fetches through cached TIDs */
	TidCacheEntry *cache;		/* NULL when the index on id is not unique */
	BlockNumber nblocks;		/* heap size at open: a cached TID beyond it is stale */
	TupleTableSlot *slot;
	AttrNumber	id_att;
	AttrNumber	label_att;
	AttrNumber	img_att;
	int32		img_typmod;		/* the img column's typmod, -1 when none */
} SplitReader;

/* The batch being packed: one pixel buffer grown as images arrive, plus per-image facts. */
typedef struct BatchBuilder
{
	int			n;				/* images in the batch */
	bytea	   *pixels;			/* VARHDRSZ + capacity bytes */
	Size		used;			/* payload bytes written */
	Size		capacity;
	int			dtype;			/* dtype of every image (0 before the first) */
	Datum	   *ids;			/* (n) int8 */
	Datum	   *labels;			/* (n) int4 */
	Datum	   *shapes;			/* (n, 3) int4 */
	bool		same_shape;		/* every image so far has the first image's shape */
	bool		packed;			/* building imgset_batch_packed()'s bytea */
	Size		tail;			/* packed: room kept after the pixels for ids, labels, shapes */
} BatchBuilder;

/* The OID of type imgtensor in the schema of the function being called. */
static Oid
ImgTensorTypeOid(FunctionCallInfo fcinfo)
{
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);

	return GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum("imgtensor"),
						   ObjectIdGetDatum(nsp));
}

/* Ereport unless the calling user may SELECT id, label and img of the table. */
static void
CheckSelectPrivilege(Oid relid)
{
	static const char *const columns[] = {"id", "label", "img"};
	Oid			user = GetUserId();

	if (pg_class_aclcheck(relid, user, ACL_SELECT) == ACLCHECK_OK)
		return;
	/* Column privileges on the three columns we read are enough, as for a SELECT. */
	for (int i = 0; i < lengthof(columns); i++)
	{
		AttrNumber	att = get_attnum(relid, columns[i]);

		if (att == InvalidAttrNumber ||
			pg_attribute_aclcheck(relid, att, user, ACL_SELECT) != ACLCHECK_OK)
			aclcheck_error(ACLCHECK_NO_PRIV, get_relkind_objtype(get_rel_relkind(relid)),
						   get_rel_name(relid));
	}
}

/* Attribute number of column `name` of type `type`, or an error naming what the split needs. */
static AttrNumber
SplitColumn(Relation heap, const char *name, Oid type)
{
	TupleDesc	desc = RelationGetDescr(heap);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), name) != 0)
			continue;
		if (att->atttypid != type)
			break;
		return att->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_WRONG_OBJECT_TYPE),
			 errmsg("imgset_batch: table \"%s\" is not an image split",
					RelationGetRelationName(heap)),
			 errdetail("A split has the columns id bigint, label integer and img imgtensor; "
					   "column \"%s\" is missing or has another type.", name)));
	return InvalidAttrNumber;	/* keep the compiler quiet */
}

/* Relcache invalidation callback: forget where the rows of relid (or of every table) are. */
static void
TidCacheInvalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	TidCacheEntry *entry;

	/* Only mark entries: a batch may be reading through them right now. */
	if (tid_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		entry = hash_search(tid_cache, &relid, HASH_FIND, NULL);
		if (entry)
			entry->stale = true;
		return;
	}
	hash_seq_init(&status, tid_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		entry->stale = true;
}

/* Free an entry's TIDs (it stays, empty) or, with remove, the entry too. */
static void
TidCacheDrop(TidCacheEntry *entry, bool remove)
{
	if (entry->tids)
	{
		pfree(entry->tids);
		tid_cache_bytes -= (Size) entry->size * sizeof(ItemPointerData);
	}
	entry->tids = NULL;
	entry->size = 0;
	entry->prewarmed = false;
	if (remove)
		hash_search(tid_cache, &entry->relid, HASH_REMOVE, NULL);
}

/*
 * Make room for `bytes` more in the cache by dropping the TIDs of the least recently used
 * splits other than keep; true when they fit then. Called only while no other split is read
 * (the batch functions read one split at a time), so no reader holds the dropped arrays.
 */
static bool
TidCacheMakeRoom(TidCacheEntry *keep, Size bytes)
{
	Size		budget = (Size) tid_cache_size_kb * 1024;

	while (tid_cache_bytes + bytes > budget)
	{
		HASH_SEQ_STATUS status;
		TidCacheEntry *entry;
		TidCacheEntry *oldest = NULL;

		hash_seq_init(&status, tid_cache);
		while ((entry = hash_seq_search(&status)) != NULL)
			if (entry != keep && entry->tids && (oldest == NULL || entry->last_use < oldest->last_use))
				oldest = entry;
		if (oldest == NULL)
			return false;
		TidCacheDrop(oldest, false);
	}
	return true;
}

/* The cache entry of split heap (of nblocks pages), emptied if it no longer describes the
 * table; stale entries of other tables (dropped, rewritten) are freed on the way. */
static TidCacheEntry *
TidCacheFor(Relation heap, BlockNumber nblocks)
{
	Oid			relid = RelationGetRelid(heap);
	TidCacheEntry *entry;
	HASH_SEQ_STATUS status;
	bool		found;

	if (tid_cache == NULL)
	{
		HASHCTL		ctl;

		tid_cache_context = AllocSetContextCreate(TopMemoryContext, "imgset TID cache",
												  ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(TidCacheEntry);
		ctl.hcxt = tid_cache_context;
		tid_cache = hash_create("imgset TID cache", 16, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		CacheRegisterRelcacheCallback(TidCacheInvalidate, (Datum) 0);
	}
	/* No split is being read while one is opened: stale entries can go now. */
	hash_seq_init(&status, tid_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (entry->stale)
			TidCacheDrop(entry, true);

	entry = hash_search(tid_cache, &relid, HASH_ENTER, &found);
	if (!found)
	{
		entry->tids = NULL;
		entry->size = 0;
		entry->prewarmed = false;
		entry->stale = false;
		entry->storage = RelationStorage(heap);
	}
	else if (entry->storage != RelationStorage(heap))
	{
		TidCacheDrop(entry, false);
		entry->storage = RelationStorage(heap);
	}
	entry->limit = (int64) nblocks * MaxHeapTuplesPerPage;
	entry->last_use = ++tid_cache_clock;
	/* A smaller imgset.tid_cache_size applies from now on. */
	if (!TidCacheMakeRoom(entry, 0))
		TidCacheDrop(entry, false);
	return entry;
}

/* Remember that id's row was found at tid, when the cache may hold that id. */
static void
TidCacheRemember(TidCacheEntry *entry, int64 id, ItemPointer tid)
{
	if (id < 0 || id >= entry->limit)
		return;
	if (id >= entry->size)
	{
		int64		size = Min(Max(id + 1, Max(2 * entry->size, 1024)), entry->limit);
		Size		grow = (Size) (size - entry->size) * sizeof(ItemPointerData);

		if (!TidCacheMakeRoom(entry, grow))
		{
			/* As many slots as still fit; this id may be past them. */
			Size		budget = (Size) tid_cache_size_kb * 1024;

			size = entry->size + (int64) ((budget - Min(budget, tid_cache_bytes)) /
										  sizeof(ItemPointerData));
			if (id >= size)
				return;
			grow = (Size) (size - entry->size) * sizeof(ItemPointerData);
		}
		if (entry->tids == NULL)
			entry->tids = MemoryContextAllocZero(tid_cache_context,
												 (Size) size * sizeof(ItemPointerData));
		else
		{
			entry->tids = repalloc(entry->tids, (Size) size * sizeof(ItemPointerData));
			memset(entry->tids + entry->size, 0, grow);
		}
		entry->size = size;
		tid_cache_bytes += grow;
	}
	entry->tids[id] = *tid;
}

static int64 SplitSize(SplitReader *r);
static void TidCachePrewarm(SplitReader *r);

/*
 * True when btree index (whose first key is id) lets at most one row have a given id at any
 * moment: unique on id alone (unique on (id, x) is not) and checked immediately (a deferred
 * unique index allows duplicates until commit).
 */
static bool
IdIsUnique(Relation index)
{
	Form_pg_index form = index->rd_index;

	return form->indisunique && form->indimmediate && form->indnkeyatts == 1;
}

/* Open split relid for reading: privileges, kind, row security, columns, index on id. */
static void
SplitOpen(SplitReader *r, Oid relid, Oid imgtensor_type)
{
	List	   *indexes;
	ListCell   *lc;
	char		relkind;

	memset(r, 0, sizeof(*r));
	r->relid = relid;
	relkind = get_rel_relkind(relid);
	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("imgset_batch: relation with OID %u does not exist", relid)));
	CheckSelectPrivilege(relid);
	if (relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("imgset_batch: \"%s\" is not a table", get_rel_name(relid))));
	/* Direct index access would bypass row-level security policies: refuse instead. */
	if (check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("imgset_batch: table \"%s\" has row-level security enabled",
						get_rel_name(relid)),
				 errdetail("imgset_batch reads splits directly and cannot apply policies.")));

	r->heap = table_open(relid, AccessShareLock);
	r->id_att = SplitColumn(r->heap, "id", INT8OID);
	r->label_att = SplitColumn(r->heap, "label", INT4OID);
	r->img_att = SplitColumn(r->heap, "img", imgtensor_type);
	r->img_typmod = TupleDescAttr(RelationGetDescr(r->heap), r->img_att - 1)->atttypmod;

	/* Any valid, non-partial btree index whose first key is id will do; prefer one that makes
	 * id unique. */
	indexes = RelationGetIndexList(r->heap);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = index->rd_index;

		if (index->rd_rel->relam == BTREE_AM_OID && form->indisvalid &&
			form->indnkeyatts >= 1 && form->indkey.values[0] == r->id_att &&
			RelationGetIndexPredicate(index) == NIL &&
			RelationGetIndexExpressions(index) == NIL &&
			(r->index == NULL || (IdIsUnique(index) && !IdIsUnique(r->index))))
		{
			if (r->index)
				index_close(r->index, AccessShareLock);
			r->index = index;
		}
		else
			index_close(index, AccessShareLock);
	}
	list_free(indexes);
	if (r->index == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("imgset_batch: table \"%s\" has no btree index on id",
						RelationGetRelationName(r->heap)),
				 errhint("Add a primary key on id.")));
	r->scan = index_beginscan(r->heap, r->index, GetActiveSnapshot(), 1, 0);
	r->slot = table_slot_create(r->heap, NULL);
	r->nblocks = RelationGetNumberOfBlocks(r->heap);
	if (IdIsUnique(r->index))
	{
		r->cache = TidCacheFor(r->heap, r->nblocks);
		r->fetch = table_index_fetch_begin(r->heap);
		if (!r->cache->prewarmed)
		{
			r->cache->prewarmed = true;
			if (SplitSize(r) <= TID_CACHE_PREWARM_MAX_IDS)
				TidCachePrewarm(r);
		}
	}
}

static void
SplitClose(SplitReader *r)
{
	ExecDropSingleTupleTableSlot(r->slot);
	if (r->fetch)
		table_index_fetch_end(r->fetch);
	index_endscan(r->scan);
	index_close(r->index, NoLock);
	table_close(r->heap, NoLock);
}

/* The number of images N of a split whose ids are 0..N-1: its largest id + 1 (0 if empty). */
static int64
SplitSize(SplitReader *r)
{
	/* The index read from its largest id: backwards, or forwards when id is DESC; rows whose
	 * id is NULL (a nullable column under a plain index) are not images of the split. */
	ScanDirection direction = (r->index->rd_indoption[0] & INDOPTION_DESC) ?
		ForwardScanDirection : BackwardScanDirection;
	IndexScanDesc scan = index_beginscan(r->heap, r->index, GetActiveSnapshot(), 1, 0);
	ScanKeyData key;
	bool		found;
	bool		isnull = true;
	int64		id = 0;

	ScanKeyEntryInitialize(&key, SK_ISNULL | SK_SEARCHNOTNULL, 1, InvalidStrategy, InvalidOid,
						   InvalidOid, InvalidOid, (Datum) 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, direction, r->slot);
	if (found)
	{
		Datum		value = slot_getattr(r->slot, r->id_att, &isnull);

		/* Read before the slot is cleared: int8 is by reference on 32-bit servers. */
		if (!isnull)
			id = DatumGetInt64(value);
	}
	ExecClearTuple(r->slot);
	index_endscan(scan);
	if (!found)
		return 0;
	if (isnull || id < 0 || id == PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("imgset_batch: table \"%s\" has ids outside 0..N-1",
						RelationGetRelationName(r->heap))));
	return id + 1;
}

/*
 * Fill the TID cache from one pass over the index on id: the TIDs its entries point to, read
 * without touching the heap (a small split costs a few milliseconds once per backend instead
 * of an index descent per image for a whole epoch). Entries of dead rows are harmless: every
 * cached TID is checked when used.
 */
static void
TidCachePrewarm(SplitReader *r)
{
	IndexScanDesc scan = index_beginscan(r->heap, r->index, GetActiveSnapshot(), 0, 0);
	ItemPointer tid;
	int64		count = 0;

	scan->xs_want_itup = true;
	index_rescan(scan, NULL, 0, NULL, 0);
	while ((tid = index_getnext_tid(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		id;

		if ((++count & 4095) == 0)
			CHECK_FOR_INTERRUPTS();
		if (scan->xs_itup == NULL)
			break;				/* this index cannot return its keys: fill lazily */
		id = index_getattr(scan->xs_itup, 1, scan->xs_itupdesc, &isnull);
		if (!isnull)
			TidCacheRemember(r->cache, DatumGetInt64(id), tid);
	}
	index_endscan(scan);
}

/* Try the cached TID of id: true, with the row in r->slot, when it is still the right row. */
static bool
SplitFindCached(SplitReader *r, int64 id)
{
	ItemPointerData tid;
	bool		call_again = false;
	bool		all_dead = false;
	bool		isnull;
	Datum		found_id;

	if (r->cache == NULL || id < 0 || id >= r->cache->size)
		return false;
	tid = r->cache->tids[id];
	if (!ItemPointerIsValid(&tid) || ItemPointerGetBlockNumber(&tid) >= r->nblocks)
		return false;
	if (!table_index_fetch_tuple(r->fetch, &tid, GetActiveSnapshot(), r->slot,
								 &call_again, &all_dead))
		return false;
	found_id = slot_getattr(r->slot, r->id_att, &isnull);
	if (isnull || DatumGetInt64(found_id) != id)
	{
		ExecClearTuple(r->slot);
		return false;
	}
	return true;
}

/* Find the row with this id; leaves it in r->slot. False when there is none. */
static bool
SplitFind(SplitReader *r, int64 id)
{
	ScanKeyData key;

	if (SplitFindCached(r, id))
		return true;
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
	index_rescan(r->scan, &key, 1, NULL, 0);
	if (!index_getnext_slot(r->scan, ForwardScanDirection, r->slot))
		return false;
	if (r->cache)
		TidCacheRemember(r->cache, id, &r->scan->xs_heaptid);
	return true;
}

/*
 * Start a batch of n images; the pixel buffer is sized once the first image is seen. A packed
 * batch keeps IMGBATCH_HEADER bytes in front of the pixels and room for the arrays behind
 * them, so the result is built in place (imgtensor_wire.h).
 */
static void
BatchStart(BatchBuilder *b, int n, bool packed)
{
	memset(b, 0, sizeof(*b));
	b->n = n;
	b->same_shape = true;
	b->packed = packed;
	b->used = packed ? IMGBATCH_HEADER : 0;
	b->tail = packed ? (Size) n * (8 + 4 + 12) : 0;
	b->ids = palloc(n * sizeof(Datum));
	b->labels = palloc(n * sizeof(Datum));
	b->shapes = palloc(3 * n * sizeof(Datum));
}

/* Room for `bytes` more payload bytes; the first call sizes the buffer for n such images. */
static uint8 *
BatchReserve(BatchBuilder *b, int i, Size bytes)
{
	Size		need;

	if (pg_add_size_overflow(b->used, bytes, &need) ||
		pg_add_size_overflow(need, b->tail, &need))
		need = SIZE_MAX;
	if (need > b->capacity)
	{
		Size		want;

		/*
		 * Expect the remaining images to be as large as this one (exact for fixed shapes),
		 * but allocate at most BATCH_PRESIZE_MAX ahead; beyond that the buffer doubles.
		 */
		if (pg_mul_size_overflow((Size) (b->n - i), bytes, &want) ||
			pg_add_size_overflow(b->used, want, &want) ||
			pg_add_size_overflow(b->tail, want, &want))
			want = SIZE_MAX;
		want = Min(want, Max(need, BATCH_PRESIZE_MAX));
		if (need > MaxAllocSize - VARHDRSZ)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("imgset_batch: the batch's pixels exceed 1 GB"),
					 errhint("Ask for fewer images per batch.")));
		want = Min(Max(want, Max(need, 2 * b->capacity)), MaxAllocSize - VARHDRSZ);
		if (b->pixels == NULL)
			b->pixels = palloc(VARHDRSZ + want);
		else
			b->pixels = repalloc(b->pixels, VARHDRSZ + want);
		b->capacity = want;
	}
	return (uint8 *) VARDATA(b->pixels) + b->used;
}

/*
 * Append image i: the row with `id` (already in r->slot), resized + center-cropped to
 * th×tw when th > 0. The detoasted copy is freed at once, so memory stays at one batch.
 */
static void
BatchAdd(BatchBuilder *b, SplitReader *r, int i, int64 id, int32 th, int32 tw)
{
	bool		isnull;
	Datum		label = slot_getattr(r->slot, r->label_att, &isnull);
	Datum		datum;
	ImgTensor  *t;
	Size		bytes;
	uint8	   *dst;
	int32		oh,
				ow;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("imgset_batch: row with id " INT64_FORMAT " of \"%s\" has a NULL label",
						id, RelationGetRelationName(r->heap))));
	datum = slot_getattr(r->slot, r->img_att, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("imgset_batch: row with id " INT64_FORMAT " of \"%s\" has a NULL img",
						id, RelationGetRelationName(r->heap))));
	t = DatumGetImgTensorP(datum);
	ImgTensorCheckStored(t);
	if (b->dtype == 0)
		b->dtype = t->dtype;
	else if (b->dtype != t->dtype)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("imgset_batch: id " INT64_FORMAT " is a %s imgtensor, earlier ones are %s",
						id, ImgTensorDtypeName(t->dtype), ImgTensorDtypeName(b->dtype))));

	oh = th > 0 ? th : t->height;
	ow = th > 0 ? tw : t->width;
	bytes = (Size) oh * ow * t->channels * ImgTensorElementSize(t->dtype);
	dst = BatchReserve(b, i, bytes);
	if (th > 0 && (t->height != th || t->width != tw))
	{
		ImgTensor  *plain = ImgTensorDecode(t);

		ImgResizeCrop(t->dtype, plain->data, t->height, t->width, t->channels, dst, th, tw);
		if (plain != t)
			pfree(plain);
	}
	else
		ImgTensorDecodeInto(t, dst, bytes);
	b->used += bytes;

	b->ids[i] = Int64GetDatum(id);
	b->labels[i] = label;
	b->shapes[3 * i] = Int32GetDatum(oh);
	b->shapes[3 * i + 1] = Int32GetDatum(ow);
	b->shapes[3 * i + 2] = Int32GetDatum(t->channels);
	if (i > 0 && (oh != DatumGetInt32(b->shapes[0]) || ow != DatumGetInt32(b->shapes[1]) ||
				  t->channels != DatumGetInt32(b->shapes[2])))
		b->same_shape = false;
	if ((Pointer) t != DatumGetPointer(datum))
		pfree(t);
	ExecClearTuple(r->slot);
}

/* The imgset.batch composite for a finished batch. */
static Datum
BatchResult(FunctionCallInfo fcinfo, BatchBuilder *b)
{
	TupleDesc	desc;
	Datum		values[8];
	bool		nulls[8] = {false};
	int			dims[2] = {b->n, 3};
	int			lbs[2] = {1, 1};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "imgset_batch: return type must be a row type");
	desc = BlessTupleDesc(desc);
	if (desc->natts != 8)
		elog(ERROR, "imgset_batch: imgset.batch has %d columns, expected 8", desc->natts);
	if (b->pixels == NULL)
		b->pixels = palloc(VARHDRSZ);
	SET_VARSIZE(b->pixels, VARHDRSZ + b->used);

	values[0] = PointerGetDatum(construct_array(b->ids, b->n, INT8OID, 8, FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(b->labels, b->n, INT4OID, 4, true,
												TYPALIGN_INT));
	if (b->same_shape)
	{
		values[2] = b->shapes[0];
		values[3] = b->shapes[1];
		values[4] = b->shapes[2];
		nulls[5] = true;
	}
	else
	{
		nulls[2] = nulls[3] = nulls[4] = true;
		values[5] = PointerGetDatum(construct_md_array(b->shapes, NULL, 2, dims, lbs, INT4OID,
													   4, true, TYPALIGN_INT));
	}
	values[6] = PointerGetDatum(cstring_to_text(ImgTensorDtypeName(b->dtype)));
	values[7] = PointerGetDatum(b->pixels);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* imgset_batch_packed()'s bytea for a finished batch: header, pixels, ids, labels, shapes. */
static Datum
BatchPackedResult(BatchBuilder *b)
{
	uint8	   *base;
	uint8	   *p;
	Size		pixel_bytes = b->used - IMGBATCH_HEADER;

	if (b->pixels == NULL)
	{
		b->pixels = palloc(VARHDRSZ + b->used + b->tail);
		b->capacity = b->used + b->tail;
	}
	Assert(b->capacity >= b->used + b->tail);
	base = (uint8 *) VARDATA(b->pixels);
	memcpy(base, IMGBATCH_MAGIC, 4);
	base[4] = IMGBATCH_VERSION;
	base[5] = (uint8) b->dtype;
	base[6] = b->same_shape ? 0 : IMGBATCH_RAGGED;
	base[7] = 0;
	imgtensor_wire_put32(base + 8, (uint32) b->n);
	for (int k = 0; k < 3; k++)
		imgtensor_wire_put32(base + 12 + 4 * k,
							 b->same_shape ? (uint32) DatumGetInt32(b->shapes[k]) : 0);
	imgtensor_wire_put32(base + 24, (uint32) ((uint64) pixel_bytes >> 32));
	imgtensor_wire_put32(base + 28, (uint32) pixel_bytes);
	p = base + b->used;
	for (int i = 0; i < b->n; i++, p += 8)
	{
		uint64		id = (uint64) DatumGetInt64(b->ids[i]);

		imgtensor_wire_put32(p, (uint32) (id >> 32));
		imgtensor_wire_put32(p + 4, (uint32) id);
	}
	for (int i = 0; i < b->n; i++, p += 4)
		imgtensor_wire_put32(p, (uint32) DatumGetInt32(b->labels[i]));
	if (!b->same_shape)
		for (int i = 0; i < 3 * b->n; i++, p += 4)
			imgtensor_wire_put32(p, (uint32) DatumGetInt32(b->shapes[i]));
	SET_VARSIZE(b->pixels, VARHDRSZ + (p - base));
	PG_RETURN_BYTEA_P(b->pixels);
}

/* Ereport unless (height, width) is (0, 0) — no resizing — or a valid target size. */
static void
CheckTarget(int32 th, int32 tw)
{
	if (th == 0 && tw == 0)
		return;
	if (th < 1 || th > IMGTENSOR_MAX_SIDE || tw < 1 || tw > IMGTENSOR_MAX_SIDE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("imgset_batch: target size %dx%d is out of range", th, tw),
				 errdetail("Give height and width between 1 and %d, or both 0 for no resizing.",
						   IMGTENSOR_MAX_SIDE)));
}

/* Ereport unless a batch of n images is allowed. */
static void
CheckBatchSize(const char *function, int64 n)
{
	if (n < 1 || n > BATCH_MAX_IMAGES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: batch size " INT64_FORMAT " is out of range", function, n),
				 errdetail("A batch has 1 to %d images.", BATCH_MAX_IMAGES)));
}

/* Read the rows with ids[0..n-1], in that order, into a finished batch. */
static Datum
ReadBatch(FunctionCallInfo fcinfo, Oid relid, const int64 *ids, int n, int32 th, int32 tw,
		  bool ids_from_user, bool packed)
{
	SplitReader r;
	BatchBuilder b;

	KeepBatchMemory();
	SplitOpen(&r, relid, ImgTensorTypeOid(fcinfo));
	BatchStart(&b, n, packed);
	for (int i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (!SplitFind(&r, ids[i]))
		{
			if (ids_from_user)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("imgset_batch: no row with id " INT64_FORMAT " in table \"%s\"",
								ids[i], RelationGetRelationName(r.heap))));
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("imgset_batch: no row with id " INT64_FORMAT " in table \"%s\"",
							ids[i], RelationGetRelationName(r.heap)),
					 errdetail("Shuffled batches need the ids of a split to run from 0 to N-1.")));
		}
		BatchAdd(&b, &r, i, ids[i], th, tw);
	}
	SplitClose(&r);
	return packed ? BatchPackedResult(&b) : BatchResult(fcinfo, &b);
}

/* imgset_batch(split regclass, ids bigint[], height int, width int), composite or packed. */
static Datum
BatchByIds(FunctionCallInfo fcinfo, bool packed)
{
	Oid			relid = PG_GETARG_OID(0);
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(1);
	int32		th = PG_GETARG_INT32(2);
	int32		tw = PG_GETARG_INT32(3);
	int			n = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	const int64 *ids = (const int64 *) ARR_DATA_PTR(a);

	if (ARR_NDIM(a) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("imgset_batch: ids must be a one-dimensional array")));
	if (array_contains_nulls(a))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("imgset_batch: ids contains NULL")));
	CheckBatchSize("imgset_batch", n);
	CheckTarget(th, tw);
	return ReadBatch(fcinfo, relid, ids, n, th, tw, true, packed);
}

PG_FUNCTION_INFO_V1(imgset_batch_ids);
Datum
imgset_batch_ids(PG_FUNCTION_ARGS)
{
	return BatchByIds(fcinfo, false);
}

PG_FUNCTION_INFO_V1(imgset_batch_packed_ids);
Datum
imgset_batch_packed_ids(PG_FUNCTION_ARGS)
{
	return BatchByIds(fcinfo, true);
}

/*
 * Ids of batch batch_no of an epoch over a split of n images (ids 0..n-1), by the client's
 * sampler (loaders/sampler.c, keep-last) under the sharding contract stated in
 * loaders/sampler.h: every rank takes floor(n / world) of the permuted positions (the
 * n mod world tail is dropped), its last batch maybe short.
 * Sets *count; ereports when the arguments are out of range.
 */
static int64 *
EpochIds(const char *function, int64 n, int64 seed, int32 epoch, int32 batch_no,
		 int32 batch_size, int32 rank, int32 world, int *count)
{
	Sampler		sampler;
	SamplerOptions options = {0};
	int64	   *ids;

	if (epoch < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: epoch %d is negative", function, epoch)));
	CheckBatchSize(function, batch_size);
	if (world < 1 || rank < 0 || rank >= world)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: rank %d of world %d is out of range", function, rank, world),
				 errdetail("world must be at least 1 and rank between 0 and world - 1.")));
	options.count = (uint64) n;
	options.batch_size = batch_size;
	options.shuffle = 1;
	options.drop_last = 0;
	options.seed = (uint64) seed;
	options.rank = rank;
	options.world = world;
	if (sampler_init(&sampler, &options) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: %s", function, ImgsetLibraryError())));
	sampler_set_epoch(&sampler, (uint64) epoch);
	if (batch_no < 0 || batch_no >= sampler.batches)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: batch %d is out of range", function, batch_no),
				 errdetail("An epoch of " INT64_FORMAT " images in batches of %d has "
						   INT64_FORMAT " batches for rank %d of world %d.",
						   n, batch_size, sampler.batches, rank, world)));
	ids = palloc(batch_size * sizeof(int64));
	*count = sampler_batch(&sampler, batch_no, ids);
	return ids;
}

/* imgset_batch(split, seed, epoch, batch_no, batch_size, rank, world, height, width),
 * composite or packed. */
static Datum
BatchOfEpoch(FunctionCallInfo fcinfo, bool packed)
{
	Oid			relid = PG_GETARG_OID(0);
	int32		th = PG_GETARG_INT32(7);
	int32		tw = PG_GETARG_INT32(8);
	SplitReader r;
	int64		n;
	int64	   *ids;
	int			count;

	CheckTarget(th, tw);
	/* Size the permutation with a first look at the split (checks privileges too). */
	SplitOpen(&r, relid, ImgTensorTypeOid(fcinfo));
	n = SplitSize(&r);
	SplitClose(&r);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("imgset_batch: table \"%s\" is empty", get_rel_name(relid))));
	ids = EpochIds("imgset_batch", n, PG_GETARG_INT64(1), PG_GETARG_INT32(2),
				   PG_GETARG_INT32(3), PG_GETARG_INT32(4), PG_GETARG_INT32(5),
				   PG_GETARG_INT32(6), &count);
	return ReadBatch(fcinfo, relid, ids, count, th, tw, false, packed);
}

PG_FUNCTION_INFO_V1(imgset_batch_epoch);
Datum
imgset_batch_epoch(PG_FUNCTION_ARGS)
{
	return BatchOfEpoch(fcinfo, false);
}

PG_FUNCTION_INFO_V1(imgset_batch_packed_epoch);
Datum
imgset_batch_packed_epoch(PG_FUNCTION_ARGS)
{
	return BatchOfEpoch(fcinfo, true);
}

/* imgset_shuffle_ids(n, seed, epoch, batch_no, batch_size, rank, world): the ids the epoch
 * form of imgset_batch reads, without reading them. */
PG_FUNCTION_INFO_V1(imgset_shuffle_ids);
Datum
imgset_shuffle_ids(PG_FUNCTION_ARGS)
{
	int64		n = PG_GETARG_INT64(0);
	int64	   *ids;
	int			count;
	Datum	   *elems;

	if (n < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("imgset_shuffle_ids: split size " INT64_FORMAT " must be positive", n)));
	ids = EpochIds("imgset_shuffle_ids", n, PG_GETARG_INT64(1), PG_GETARG_INT32(2),
				   PG_GETARG_INT32(3), PG_GETARG_INT32(4), PG_GETARG_INT32(5),
				   PG_GETARG_INT32(6), &count);
	elems = palloc(count * sizeof(Datum));
	for (int i = 0; i < count; i++)
		elems[i] = Int64GetDatum(ids[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, count, INT8OID, 8, FLOAT8PASSBYVAL,
										  TYPALIGN_DOUBLE));
}

/* imgset_batch_count(n, batch_size, world): batches per rank in an epoch of n images. */
PG_FUNCTION_INFO_V1(imgset_batch_count);
Datum
imgset_batch_count(PG_FUNCTION_ARGS)
{
	int64		n = PG_GETARG_INT64(0);
	int32		batch_size = PG_GETARG_INT32(1);
	int32		world = PG_GETARG_INT32(2);
	Sampler		sampler;
	SamplerOptions options = {0};

	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("imgset_batch_count: split size " INT64_FORMAT " is negative", n)));
	CheckBatchSize("imgset_batch_count", batch_size);
	if (world < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("imgset_batch_count: world %d must be at least 1", world)));
	/* Every rank gets the same number of batches (loaders/sampler.h); ask the sampler. */
	options.count = (uint64) n;
	options.batch_size = batch_size;
	options.world = world;
	if (sampler_init(&sampler, &options) < 0)
		elog(ERROR, "imgset_batch_count: %s", ImgsetLibraryError());
	PG_RETURN_INT64(sampler.batches);
}
