/* dataset.c — the data-set catalogue: create_dataset() and drop_dataset(), the only writers of
 * imgset.datasets and imgset.splits. Each checks the caller's rights, then acts with the rights
 * of the catalogue's owner (the extension's owner) for what the caller may not do directly. */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/dependency.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "imgtensor.h"

/* Longest data set name (the CHECK on imgset.datasets.name). */
#define DATASET_NAME_MAX 48
/* A split whose images always fit in its row (bytes of pixels, with room for the row's other
 * fields and headers in an 8 kB page) is stored PLAIN; see SplitStorage(). */
#define IN_ROW_PIXEL_BYTES 8000

static const char *const split_names[] = {"train", "test"};

/* The caller's identity and settings, saved while acting as the catalogue's owner. */
typedef struct OwnerScope
{
	Oid			caller;
	int			caller_sec_context;
	int			guc_nest_level;
} OwnerScope;

/* The owner of relation relid; ereports when it does not exist. */
static Oid
RelationOwner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "pg_imgset: cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Act as `owner` until OwnerScopeEnd: a security-restricted operation (no SET ROLE, no
 * temporary objects) under search_path = pg_catalog, pg_temp, as PostgreSQL runs an index
 * expression with its table owner's rights. An error on the way restores the caller with the
 * (sub)transaction's abort.
 */
static void
OwnerScopeBegin(OwnerScope *scope, Oid owner)
{
	GetUserIdAndSecContext(&scope->caller, &scope->caller_sec_context);
	SetUserIdAndSecContext(owner, scope->caller_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	scope->guc_nest_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* Tables go where the owner's defaults put them, not into a tablespace the caller chose. */
	(void) set_config_option("default_tablespace", "", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static void
OwnerScopeEnd(OwnerScope *scope)
{
	AtEOXact_GUC(false, scope->guc_nest_level);
	SetUserIdAndSecContext(scope->caller, scope->caller_sec_context);
}

/* Run one statement through SPI (already connected); ereports unless it returns `expect`. */
static void
RunStatement(const char *sql, int nargs, Oid *types, Datum *values, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (rc != expect)
		elog(ERROR, "pg_imgset: \"%s\" returned %s", sql, SPI_result_code_string(rc));
}

/* Ereport unless name is 1 to 48 of A-Za-z0-9_.- not starting with "." or "-". */
static void
CheckDatasetName(const char *name)
{
	size_t		len = strlen(name);
	bool		ok = len >= 1 && len <= DATASET_NAME_MAX && name[0] != '.' && name[0] != '-';

	for (size_t i = 0; ok && i < len; i++)
		ok = (name[i] >= 'A' && name[i] <= 'Z') || (name[i] >= 'a' && name[i] <= 'z') ||
			(name[i] >= '0' && name[i] <= '9') || name[i] == '_' || name[i] == '.' ||
			name[i] == '-';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("create_dataset: invalid data set name \"%s\"", name),
				 errdetail("A name has 1 to 48 letters, digits, \"_\", \".\" or \"-\" and does "
						   "not start with \".\" or \"-\".")));
}

/* The {height, width, channels} of a split (shape NULL: images of any size, returns false). */
static bool
SplitShape(FunctionCallInfo fcinfo, int argno, const char *split, int32 shape[3])
{
	ArrayType  *a;
	bool		ok;

	if (PG_ARGISNULL(argno))
		return false;
	a = PG_GETARG_ARRAYTYPE_P(argno);
	ok = ARR_NDIM(a) == 1 && ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a)) == 3 &&
		!array_contains_nulls(a);
	if (ok)
	{
		memcpy(shape, ARR_DATA_PTR(a), 3 * sizeof(int32));
		ok = shape[0] >= 1 && shape[0] <= IMGTENSOR_MAX_SIDE && shape[1] >= 1 &&
			shape[1] <= IMGTENSOR_MAX_SIDE && shape[2] >= 1 &&
			shape[2] <= IMGTENSOR_MAX_CHANNELS;
	}
	if (!ok)
	{
		Oid			out;
		bool		varlena;

		getTypeOutputInfo(INT4ARRAYOID, &out, &varlena);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("create_dataset: %s shape %s is not {height,width,channels} within 1..%d "
						"and 1..%d", split, OidOutputFunctionCall(out, PointerGetDatum(a)),
						IMGTENSOR_MAX_SIDE, IMGTENSOR_MAX_CHANNELS)));
	}
	return true;
}

/*
 * The img column's storage for a split of this shape: PLAIN when an image of either dtype
 * (float32 is 4 bytes an element) always fits in the row — one heap access per image, no TOAST
 * lookup; MAIN when only a uint8 image is sure to fit (it stays in the row; a float32 one is
 * compressed or moved out when the row would not fit); NULL, the type's EXTERNAL, otherwise.
 */
static const char *
SplitStorage(const int32 shape[3], bool fixed)
{
	int64		elements;

	if (!fixed)
		return NULL;
	elements = (int64) shape[0] * shape[1] * shape[2];
	if (elements * 4 <= IN_ROW_PIXEL_BYTES)
		return "PLAIN";
	if (elements <= IN_ROW_PIXEL_BYTES)
		return "MAIN";
	return NULL;
}

/*
 * create_dataset(name, class_names, train_count, test_count, train_shape, test_shape) →
 * (split, rel): registers data set `name` owned by the caller and creates its split tables
 * imgset.NAME_train and imgset.NAME_test, given to the caller. The caller needs no right on
 * the catalogue or on schema imgset; the tables are created and registered with the
 * catalogue owner's rights, so a creator can neither plant objects in schema imgset nor
 * register a table create_dataset did not make.
 */
PG_FUNCTION_INFO_V1(imgset_create_dataset);
Datum
imgset_create_dataset(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	const char *schema = quote_identifier(get_namespace_name(nsp));
	char	   *name;
	ArrayType  *class_names;
	int64		counts[2];
	int32		shapes[2][3];
	bool		fixed[2];
	Oid			catalogue = get_relname_relid("datasets", nsp);
	Oid			rels[2];
	OwnerScope	scope;
	Oid			types[3] = {TEXTOID, TEXTARRAYOID, OIDOID};
	Datum		values[3];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("create_dataset: name, class_names and counts must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	class_names = PG_GETARG_ARRAYTYPE_P(1);
	counts[0] = PG_GETARG_INT64(2);
	counts[1] = PG_GETARG_INT64(3);
	CheckDatasetName(name);
	if (ARR_NDIM(class_names) != 1 || ArrayGetNItems(1, ARR_DIMS(class_names)) < 1 ||
		array_contains_nulls(class_names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("create_dataset: class_names must be a non-empty one-dimensional array "
						"without NULLs")));
	if (counts[0] < 0 || counts[1] < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("create_dataset: counts must not be negative (got " INT64_FORMAT " and "
						INT64_FORMAT ")", counts[0], counts[1])));
	for (int s = 0; s < 2; s++)
		fixed[s] = SplitShape(fcinfo, 4 + s, split_names[s], shapes[s]);
	if (!OidIsValid(catalogue))
		elog(ERROR, "pg_imgset: table %s.datasets does not exist", schema);

	InitMaterializedSRF(fcinfo, 0);
	OwnerScopeBegin(&scope, RelationOwner(catalogue));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_imgset: SPI_connect failed");
	values[0] = CStringGetTextDatum(name);
	values[1] = PointerGetDatum(class_names);
	values[2] = ObjectIdGetDatum(scope.caller);
	RunStatement(psprintf("SELECT 1 FROM %s.datasets WHERE name = $1", schema), 1, types, values,
				 SPI_OK_SELECT);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("create_dataset: data set \"%s\" already exists", name),
				 errhint("Drop it first with imgset.drop_dataset(name).")));
	RunStatement(psprintf("INSERT INTO %s.datasets (name, class_names, owner) "
						  "VALUES ($1, $2, $3::regrole)", schema), 3, types, values,
				 SPI_OK_INSERT);
	for (int s = 0; s < 2; s++)
	{
		const char *table = quote_identifier(psprintf("%s_%s", name, split_names[s]));
		const char *storage = SplitStorage(shapes[s], fixed[s]);
		Oid			split_types[7] = {TEXTOID, TEXTOID, OIDOID, INT8OID, INT4OID, INT4OID, INT4OID};
		Datum		split_values[7];
		char		split_nulls[7];

		RunStatement(psprintf("CREATE TABLE %s.%s (id bigint PRIMARY KEY CHECK (id >= 0 AND id < "
							  INT64_FORMAT "), label integer NOT NULL CHECK (label >= 0 AND "
							  "label < %d), img %s.imgtensor%s NOT NULL)", schema, table,
							  counts[s], ArrayGetNItems(1, ARR_DIMS(class_names)), schema,
							  fixed[s] ? psprintf("(%d,%d,%d)", shapes[s][0], shapes[s][1],
												  shapes[s][2]) : ""),
					 0, NULL, NULL, SPI_OK_UTILITY);
		rels[s] = get_relname_relid(psprintf("%s_%s", name, split_names[s]), nsp);
		if (storage)
			RunStatement(psprintf("ALTER TABLE %s.%s ALTER COLUMN img SET STORAGE %s", schema,
								  table, storage), 0, NULL, NULL, SPI_OK_UTILITY);
		RunStatement(psprintf("COMMENT ON TABLE %s.%s IS %s", schema, table,
							  quote_literal_cstr(psprintf("%s split of data set %s (pg_imgset)",
														  split_names[s], name))),
					 0, NULL, NULL, SPI_OK_UTILITY);
		RunStatement(psprintf("ALTER TABLE %s.%s OWNER TO %s", schema, table,
							  quote_identifier(GetUserNameFromId(scope.caller, false))),
					 0, NULL, NULL, SPI_OK_UTILITY);
		split_values[0] = CStringGetTextDatum(name);
		split_values[1] = CStringGetTextDatum(split_names[s]);
		split_values[2] = ObjectIdGetDatum(rels[s]);
		split_values[3] = Int64GetDatum(counts[s]);
		memset(split_nulls, ' ', sizeof(split_nulls));
		for (int k = 0; k < 3; k++)
		{
			split_values[4 + k] = Int32GetDatum(shapes[s][k]);
			split_nulls[4 + k] = fixed[s] ? ' ' : 'n';
		}
		if (SPI_execute_with_args(psprintf("INSERT INTO %s.splits (dataset, split, rel, count, "
										   "height, width, channels) VALUES ($1, $2, "
										   "$3::regclass, $4, $5, $6, $7)", schema),
								  7, split_types, split_values, split_nulls, false, 0) !=
			SPI_OK_INSERT)
			elog(ERROR, "pg_imgset: could not register split %s", split_names[s]);
	}
	SPI_finish();
	OwnerScopeEnd(&scope);

	for (int s = 0; s < 2; s++)
	{
		Datum		row[2] = {CStringGetTextDatum(split_names[s]), ObjectIdGetDatum(rels[s])};
		bool		nulls[2] = {false, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
	}
	return (Datum) 0;
}

/* Ereport unless role `user` may drop table relid (owns it, or has the rights of its owner). */
static void
CheckTableOwner(Oid relid, Oid user)
{
#if PG_VERSION_NUM >= 160000
	bool		owner = object_ownercheck(RelationRelationId, relid, user);
#else
	bool		owner = pg_class_ownercheck(relid, user);
#endif

	if (!owner)
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_TABLE, get_rel_name(relid));
}

/*
 * drop_dataset(name): drops data set `name` — its split tables, by the OIDs create_dataset
 * recorded (never by a name read back), and its catalogue rows. Only the data set's owner, a
 * member of the owning role or a superuser may; each table must still belong to the data set's
 * owner, and dropping it needs its ownership, as DROP TABLE does. A split table already
 * dropped by hand is skipped.
 */
PG_FUNCTION_INFO_V1(imgset_drop_dataset);
Datum
imgset_drop_dataset(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	const char *schema = quote_identifier(get_namespace_name(nsp));
	Oid			catalogue = get_relname_relid("datasets", nsp);
	OwnerScope	scope;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	Oid			owner;
	Oid			rels[2];
	int			nrels = 0;
	bool		isnull;

	if (!OidIsValid(catalogue))
		elog(ERROR, "pg_imgset: table %s.datasets does not exist", schema);
	/* Read the catalogue (the caller may lack SELECT on it) and lock the data set's row. */
	OwnerScopeBegin(&scope, RelationOwner(catalogue));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_imgset: SPI_connect failed");
	RunStatement(psprintf("SELECT owner::oid FROM %s.datasets WHERE name = $1 FOR UPDATE",
						  schema), 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("drop_dataset: data set \"%s\" does not exist", name)));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										   &isnull));
	if (!has_privs_of_role(scope.caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("drop_dataset: must be owner of data set \"%s\"", name)));
	RunStatement(psprintf("SELECT rel::oid FROM %s.splits WHERE dataset = $1 ORDER BY split DESC",
						  schema), 1, types, values, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed && nrels < 2; i++)
		rels[nrels++] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	OwnerScopeEnd(&scope);

	/* The tables, as the caller: by OID, each locked and its ownership checked first. */
	for (int i = 0; i < nrels; i++)
	{
		ObjectAddress table = {RelationRelationId, rels[i], 0};

		LockRelationOid(rels[i], AccessExclusiveLock);
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(rels[i])))
		{
			UnlockRelationOid(rels[i], AccessExclusiveLock);
			continue;
		}
		/* create_dataset gave its tables to the data set's owner: a table of anyone else under
		 * a recorded OID (a hand-edited catalogue, a reused OID) is not one it made. */
		if (RelationOwner(rels[i]) != owner)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("drop_dataset: table \"%s\" does not belong to the owner of data set \"%s\"",
							get_rel_name(rels[i]), name),
					 errdetail("create_dataset gives a data set's tables to its owner; this table is "
							   "not one it made.")));
		CheckTableOwner(rels[i], scope.caller);
		performDeletion(&table, DROP_RESTRICT, 0);
	}

	OwnerScopeBegin(&scope, RelationOwner(catalogue));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_imgset: SPI_connect failed");
	RunStatement(psprintf("DELETE FROM %s.datasets WHERE name = $1", schema), 1, types, values,
				 SPI_OK_DELETE);
	SPI_finish();
	OwnerScopeEnd(&scope);
	PG_RETURN_VOID();
}
