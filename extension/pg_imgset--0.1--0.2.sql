-- pg_imgset--0.1--0.2.sql — from 0.1 to 0.2: data sets get owners and only create_dataset /
-- drop_dataset write the catalogue; add_model needs no UPDATE right; stored model sizes are
-- checked against their chunks. Everything stored is kept.
\echo Use "ALTER EXTENSION pg_imgset UPDATE TO '0.2'" to load this file. \quit

-- ---------------------------------------------------------------------------------------
-- Data sets: owners, and a catalogue only the extension's functions write
-- ---------------------------------------------------------------------------------------

-- 0.1's create_dataset made exactly @extschema@.NAME_train and NAME_test; a splits row naming
-- any other table was written by hand (0.1 let creators insert such rows), and drop_dataset
-- would drop that table. Such rows leave the catalogue; no table is dropped.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT s.dataset, s.split, s.rel::oid AS relid, s.rel::text AS rel
        FROM @extschema@.splits s
        WHERE to_regclass(format('%I.%I', '@extschema@', s.dataset || '_' || s.split)) IS DISTINCT FROM s.rel
    LOOP
        RAISE WARNING 'pg_imgset 0.2: split % of data set "%" named table % (OID %), which create_dataset did not make; it is no longer registered',
            r.split, r.dataset, r.rel, r.relid;
        DELETE FROM @extschema@.splits s WHERE s.dataset = r.dataset AND s.split = r.split;
    END LOOP;
END
$$;

-- The owner of a data set is the owner of its split tables (0.1 created them as the caller);
-- a data set without a table left belongs to the catalogue's owner.
ALTER TABLE datasets ADD COLUMN owner regrole;
UPDATE datasets d
   SET owner = coalesce((SELECT c.relowner FROM @extschema@.splits s JOIN pg_catalog.pg_class c ON c.oid = s.rel
                          WHERE s.dataset = d.name ORDER BY s.split DESC LIMIT 1),
                        (SELECT c.relowner FROM pg_catalog.pg_class c
                          WHERE c.oid = '@extschema@.datasets'::regclass))::regrole;
ALTER TABLE datasets ALTER COLUMN owner SET NOT NULL;
COMMENT ON TABLE datasets IS
    'image data sets stored by pg_imgset: names, class names and owners (written only by create_dataset and drop_dataset)';
COMMENT ON COLUMN datasets.owner IS
    'the role that created the data set and owns its split tables; it (a member, or a superuser) may drop it';

-- 0.1 asked creators for INSERT on the catalogue and CREATE on this schema; 0.2 needs neither,
-- and either would let a creator forge catalogue rows or plant look-alike functions here.
-- A REVOKE run by an extension script records the grants left as the extension's own
-- (pg_init_privs), which pg_dump would then leave out (a reader's SELECT, say): the records of
-- these three objects are put back as they were.
DO $$
DECLARE
    r record;
    objects CONSTANT pg_catalog.pg_init_privs[] := ARRAY(
        SELECT p FROM pg_catalog.pg_init_privs p
        WHERE (p.objoid, p.classoid) IN (('@extschema@.datasets'::regclass, 'pg_class'::regclass),
                                         ('@extschema@.splits'::regclass, 'pg_class'::regclass),
                                         ('@extschema@'::regnamespace, 'pg_namespace'::regclass)));
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS rel, a.grantee
        FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) a
        WHERE c.oid IN ('@extschema@.datasets'::regclass, '@extschema@.splits'::regclass)
          AND a.grantee <> c.relowner AND a.privilege_type <> 'SELECT'
        GROUP BY 1, 2
    LOOP
        RAISE NOTICE 'pg_imgset 0.2: revoking write rights on % from %', r.rel,
            CASE r.grantee WHEN 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END;
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %s FROM %s CASCADE',
                       r.rel, CASE r.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(r.grantee::regrole::text) END);
    END LOOP;
    FOR r IN
        SELECT a.grantee
        FROM pg_catalog.pg_namespace n, LATERAL pg_catalog.aclexplode(n.nspacl) a
        WHERE n.nspname = '@extschema@' AND a.grantee <> n.nspowner AND a.privilege_type = 'CREATE'
    LOOP
        RAISE NOTICE 'pg_imgset 0.2: revoking CREATE on schema @extschema@ from %',
            CASE r.grantee WHEN 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END;
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM %s CASCADE', '@extschema@',
                       CASE r.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(r.grantee::regrole::text) END);
    END LOOP;
    DELETE FROM pg_catalog.pg_init_privs p
    WHERE (p.objoid, p.classoid) IN (('@extschema@.datasets'::regclass, 'pg_class'::regclass),
                                     ('@extschema@.splits'::regclass, 'pg_class'::regclass),
                                     ('@extschema@'::regnamespace, 'pg_namespace'::regclass));
    INSERT INTO pg_catalog.pg_init_privs SELECT * FROM unnest(objects);
END
$$;

-- The two writers of the catalogue are C functions: they check the caller's rights, then
-- create the split tables in this schema and write the catalogue with the rights of the
-- catalogue's owner (dataset.c). Creators need EXECUTE on create_dataset, nothing else.
CREATE OR REPLACE FUNCTION create_dataset(name text, class_names text[],
                                          train_count bigint, test_count bigint,
                                          train_shape integer[] DEFAULT NULL,
                                          test_shape integer[] DEFAULT NULL)
RETURNS TABLE (split text, rel regclass)
AS 'MODULE_PATHNAME', 'imgset_create_dataset' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION create_dataset(text, text[], bigint, bigint, integer[], integer[]) IS
    'register a data set owned by the caller and create its empty split tables @extschema@.NAME_train / NAME_test, owned by the caller; returns them';
REVOKE EXECUTE ON FUNCTION create_dataset(text, text[], bigint, bigint, integer[], integer[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION drop_dataset(name text) RETURNS void
AS 'MODULE_PATHNAME', 'imgset_drop_dataset' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION drop_dataset(text) IS
    'drop a data set (its owner, a member of the owning role, or a superuser): the split tables create_dataset made, by OID, and its catalogue rows';

-- ---------------------------------------------------------------------------------------
-- Models
-- ---------------------------------------------------------------------------------------
ALTER TABLE models ADD CONSTRAINT models_bytes_fit_chunks CHECK (bytes <= chunks::bigint * 67108864);

CREATE OR REPLACE FUNCTION add_model(name text, checkpoint bytea, replace boolean DEFAULT false)
RETURNS models
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    chunk constant integer := 8388608;   -- 8 MB: no stored value comes near the 1 GB limit
    info record;
    n integer;
    result @extschema@.models;
BEGIN
    IF name IS NULL OR checkpoint IS NULL OR replace IS NULL THEN
        RAISE EXCEPTION 'add_model: name, checkpoint and replace must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF name !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$' THEN
        RAISE EXCEPTION 'add_model: invalid model name "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A name has 1 to 64 letters, digits, "_", "." or "-" and does not start with "." or "-".';
    END IF;
    info := @extschema@.checkpoint_info(checkpoint);   -- the whole file checked before it is stored
    n := (octet_length(checkpoint) + chunk - 1) / chunk;
    IF replace THEN
        -- Replacing needs UPDATE and DELETE anyway: lock the row, so replacements queue.
        PERFORM 1 FROM @extschema@.models m WHERE m.name = name FOR UPDATE;
    ELSE
        -- Adding needs no UPDATE right: no row lock (a concurrent add of the name fails below).
        PERFORM 1 FROM @extschema@.models m WHERE m.name = name;
    END IF;
    IF FOUND THEN
        IF NOT replace THEN
            RAISE EXCEPTION 'add_model: model "%" already exists', name
                USING ERRCODE = 'duplicate_object',
                      HINT = 'Pass replace => true to replace it.';
        END IF;
        DELETE FROM @extschema@.model_chunks c WHERE c.model = name;
        UPDATE @extschema@.models m
           SET arch = info.arch, channels = info.channels, height = info.height,
               width = info.width, classes = info.classes, class_names = info.class_names,
               parameters = info.parameters, step = info.step,
               bytes = octet_length(checkpoint), chunks = n, sha256 = sha256(checkpoint),
               version = nextval('@extschema@.model_version_seq'), created = now()
         WHERE m.name = name
        RETURNING * INTO result;
    ELSE
        BEGIN
            INSERT INTO @extschema@.models (name, arch, channels, height, width, classes, class_names,
                                            parameters, step, bytes, chunks, sha256)
            VALUES (name, info.arch, info.channels, info.height, info.width, info.classes,
                    info.class_names, info.parameters, info.step, octet_length(checkpoint), n,
                    sha256(checkpoint))
            RETURNING * INTO result;
        EXCEPTION WHEN unique_violation THEN
            RAISE EXCEPTION 'add_model: model "%" already exists', name
                USING ERRCODE = 'duplicate_object',
                      HINT = 'Pass replace => true to replace it.';
        END;
    END IF;
    INSERT INTO @extschema@.model_chunks (model, chunk_no, data)
    SELECT name, i, substring(checkpoint FROM i * chunk + 1 FOR chunk)
    FROM generate_series(0, n - 1) i;
    RETURN result;
END
$$;

COMMENT ON FUNCTION imgset_model_cache() IS
    'the models this backend holds parsed that the caller may read: version, memory, load time in ms, calls served, and the OpenBLAS kernel';
