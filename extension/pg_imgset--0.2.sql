-- pg_imgset--0.2.sql — the imgtensor type, data sets as tables, mini-batch functions and
-- in-database inference (a fresh install of 0.2; pg_imgset--0.1--0.2.sql updates a 0.1 one).
\echo Use "CREATE EXTENSION pg_imgset" to load this file. \quit

-- ---------------------------------------------------------------------------------------
-- The type
-- ---------------------------------------------------------------------------------------
CREATE TYPE imgtensor;

CREATE FUNCTION imgtensor_in(cstring, oid, integer) RETURNS imgtensor
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION imgtensor_out(imgtensor) RETURNS cstring
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION imgtensor_recv(internal, oid, integer) RETURNS imgtensor
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION imgtensor_send(imgtensor) RETURNS bytea
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION imgtensor_typmod_in(cstring[]) RETURNS integer
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION imgtensor_typmod_out(integer) RETURNS cstring
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE imgtensor (
    INPUT = imgtensor_in,
    OUTPUT = imgtensor_out,
    RECEIVE = imgtensor_recv,
    SEND = imgtensor_send,
    TYPMOD_IN = imgtensor_typmod_in,
    TYPMOD_OUT = imgtensor_typmod_out,
    INTERNALLENGTH = VARIABLE,
    ALIGNMENT = int4,
    STORAGE = external
);

COMMENT ON TYPE imgtensor IS
    'an H×W×C image (uint8 or float32, channels-last, optionally compressed); imgtensor(H,W,C) fixes the shape';
COMMENT ON FUNCTION imgtensor_in(cstring, oid, integer) IS
    'imgtensor text input: DTYPE:HxWxC:HEX';
COMMENT ON FUNCTION imgtensor_out(imgtensor) IS
    'imgtensor text output: DTYPE:HxWxC:HEX (decompressed)';
COMMENT ON FUNCTION imgtensor_recv(internal, oid, integer) IS
    'imgtensor binary input: 20-byte header (network order) + payload';
COMMENT ON FUNCTION imgtensor_send(imgtensor) IS
    'imgtensor binary output: 20-byte header (network order) + decompressed payload';
COMMENT ON FUNCTION imgtensor_typmod_in(cstring[]) IS
    'imgtensor(H,W,C) type modifier input';
COMMENT ON FUNCTION imgtensor_typmod_out(integer) IS
    'imgtensor(H,W,C) type modifier output';

-- Typmod enforcement on assignment and explicit casts.
CREATE FUNCTION imgtensor(imgtensor, integer, boolean) RETURNS imgtensor
    AS 'MODULE_PATHNAME', 'imgtensor_coerce' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor(imgtensor, integer, boolean) IS
    'checks an imgtensor against the shape of an imgtensor(H,W,C) type modifier';
CREATE CAST (imgtensor AS imgtensor)
    WITH FUNCTION imgtensor(imgtensor, integer, boolean) AS IMPLICIT;
COMMENT ON CAST (imgtensor AS imgtensor) IS 'enforces imgtensor(H,W,C)';

-- bytea ⇄ imgtensor
CREATE FUNCTION imgtensor(bytea, height integer, width integer, channels integer) RETURNS imgtensor
    AS 'MODULE_PATHNAME', 'imgtensor_from_bytea' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor(bytea, integer, integer, integer) IS
    'a uint8 imgtensor of the given shape from H*W*C raw bytes';
CREATE FUNCTION imgtensor(bytea, integer, boolean) RETURNS imgtensor
    AS 'MODULE_PATHNAME', 'imgtensor_from_bytea_typmod' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor(bytea, integer, boolean) IS
    'cast bytea to imgtensor(H,W,C): raw uint8 pixels';
CREATE CAST (bytea AS imgtensor) WITH FUNCTION imgtensor(bytea, integer, boolean);
COMMENT ON CAST (bytea AS imgtensor) IS 'raw uint8 pixels; the target must be imgtensor(H,W,C)';

CREATE FUNCTION imgtensor_to_bytea(imgtensor) RETURNS bytea
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor_to_bytea(imgtensor) IS
    'the decompressed payload: uint8 pixels, or float32 little-endian';
CREATE CAST (imgtensor AS bytea) WITH FUNCTION imgtensor_to_bytea(imgtensor);
COMMENT ON CAST (imgtensor AS bytea) IS 'the decompressed payload';

-- arrays ⇄ imgtensor
CREATE FUNCTION imgtensor(integer[], height integer, width integer, channels integer) RETURNS imgtensor
    AS 'MODULE_PATHNAME', 'imgtensor_from_array' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor(integer[], integer, integer, integer) IS
    'a uint8 imgtensor of the given shape from H*W*C integers in 0..255 (channels-last order)';
CREATE FUNCTION imgtensor(real[], height integer, width integer, channels integer) RETURNS imgtensor
    AS 'MODULE_PATHNAME', 'imgtensor_from_array' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor(real[], integer, integer, integer) IS
    'a float32 imgtensor of the given shape from H*W*C reals (channels-last order)';
CREATE FUNCTION imgtensor(integer[], integer, boolean) RETURNS imgtensor
    AS 'MODULE_PATHNAME', 'imgtensor_from_array_typmod' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor(integer[], integer, boolean) IS
    'cast integer[] to imgtensor(H,W,C) (uint8)';
CREATE FUNCTION imgtensor(real[], integer, boolean) RETURNS imgtensor
    AS 'MODULE_PATHNAME', 'imgtensor_from_array_typmod' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor(real[], integer, boolean) IS
    'cast real[] to imgtensor(H,W,C) (float32)';
CREATE CAST (integer[] AS imgtensor) WITH FUNCTION imgtensor(integer[], integer, boolean);
COMMENT ON CAST (integer[] AS imgtensor) IS 'uint8 pixels; the target must be imgtensor(H,W,C)';
CREATE CAST (real[] AS imgtensor) WITH FUNCTION imgtensor(real[], integer, boolean);
COMMENT ON CAST (real[] AS imgtensor) IS 'float32 pixels; the target must be imgtensor(H,W,C)';

CREATE FUNCTION imgtensor_to_int4(imgtensor) RETURNS integer[]
    AS 'MODULE_PATHNAME', 'imgtensor_to_int4_array' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor_to_int4(imgtensor) IS
    'the pixels of a uint8 imgtensor as an H×W×C integer array';
CREATE FUNCTION imgtensor_to_float4(imgtensor) RETURNS real[]
    AS 'MODULE_PATHNAME', 'imgtensor_to_float4_array' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor_to_float4(imgtensor) IS
    'the pixels as an H×W×C real array (uint8 values are not scaled)';
CREATE CAST (imgtensor AS integer[]) WITH FUNCTION imgtensor_to_int4(imgtensor);
COMMENT ON CAST (imgtensor AS integer[]) IS 'uint8 pixels as an H×W×C array';
CREATE CAST (imgtensor AS real[]) WITH FUNCTION imgtensor_to_float4(imgtensor);
COMMENT ON CAST (imgtensor AS real[]) IS 'pixels as an H×W×C array';

-- Accessors: they read only the header of a toasted value.
CREATE FUNCTION height(imgtensor) RETURNS integer
    AS 'MODULE_PATHNAME', 'imgtensor_height' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION height(imgtensor) IS 'image height in pixels';
CREATE FUNCTION width(imgtensor) RETURNS integer
    AS 'MODULE_PATHNAME', 'imgtensor_width' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION width(imgtensor) IS 'image width in pixels';
CREATE FUNCTION channels(imgtensor) RETURNS integer
    AS 'MODULE_PATHNAME', 'imgtensor_channels' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION channels(imgtensor) IS 'number of channels (1 to 4)';
CREATE FUNCTION dtype(imgtensor) RETURNS text
    AS 'MODULE_PATHNAME', 'imgtensor_dtype' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dtype(imgtensor) IS 'element type: uint8 or float32';
CREATE FUNCTION codec(imgtensor) RETURNS text
    AS 'MODULE_PATHNAME', 'imgtensor_codec' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION codec(imgtensor) IS 'payload compression: none, zlib or lz4';
CREATE FUNCTION nbytes(imgtensor) RETURNS bigint
    AS 'MODULE_PATHNAME', 'imgtensor_nbytes' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION nbytes(imgtensor) IS 'decompressed payload size in bytes (H*W*C*element size)';

-- Equality (dtype, shape and pixels; compression does not matter).
CREATE FUNCTION imgtensor_eq(imgtensor, imgtensor) RETURNS boolean
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor_eq(imgtensor, imgtensor) IS 'same dtype, shape and pixels';
CREATE FUNCTION imgtensor_ne(imgtensor, imgtensor) RETURNS boolean
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgtensor_ne(imgtensor, imgtensor) IS 'different dtype, shape or pixels';
CREATE OPERATOR = (LEFTARG = imgtensor, RIGHTARG = imgtensor, PROCEDURE = imgtensor_eq,
                   COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel);
COMMENT ON OPERATOR =(imgtensor, imgtensor) IS 'same dtype, shape and pixels';
CREATE OPERATOR <> (LEFTARG = imgtensor, RIGHTARG = imgtensor, PROCEDURE = imgtensor_ne,
                    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
COMMENT ON OPERATOR <>(imgtensor, imgtensor) IS 'different dtype, shape or pixels';

-- Image operations.
CREATE FUNCTION resize(imgtensor, height integer, width integer) RETURNS imgtensor
    AS 'MODULE_PATHNAME', 'imgtensor_resize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION resize(imgtensor, integer, integer) IS
    'bilinear resize (half-pixel centres, no antialiasing; uint8 rounded)';
CREATE FUNCTION center_crop(imgtensor, height integer, width integer) RETURNS imgtensor
    AS 'MODULE_PATHNAME', 'imgtensor_center_crop' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION center_crop(imgtensor, integer, integer) IS
    'the centred height×width window (offsets rounded down)';
CREATE FUNCTION resize_crop(imgtensor, height integer, width integer) RETURNS imgtensor
    AS 'MODULE_PATHNAME', 'imgtensor_resize_crop' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION resize_crop(imgtensor, integer, integer) IS
    'resize keeping the aspect ratio until the image covers height×width, then center_crop';
CREATE FUNCTION to_float(imgtensor, mean real[], std real[]) RETURNS imgtensor
    AS 'MODULE_PATHNAME', 'imgtensor_to_float' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION to_float(imgtensor, real[], real[]) IS
    'float32 (x/255 - mean[c]) / std[c] for uint8 ((x - mean[c]) / std[c] for float32); one value or one per channel';
CREATE FUNCTION imgset_compress(imgtensor, codec text) RETURNS imgtensor
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgset_compress(imgtensor, text) IS
    'the same image with its payload compressed by zlib or lz4 (or none); kept uncompressed when that is not smaller';

-- ---------------------------------------------------------------------------------------
-- Data sets: metadata here, one table per split (created by create_dataset)
-- ---------------------------------------------------------------------------------------
CREATE TABLE datasets (
    name        text PRIMARY KEY
                CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,47}$'),
    class_names text[] NOT NULL
                CHECK (cardinality(class_names) >= 1 AND array_ndims(class_names) = 1
                       AND array_position(class_names, NULL) IS NULL),
    created     timestamptz NOT NULL DEFAULT now(),
    owner       regrole NOT NULL
);
COMMENT ON TABLE datasets IS
    'image data sets stored by pg_imgset: names, class names and owners (written only by create_dataset and drop_dataset)';
COMMENT ON COLUMN datasets.class_names IS 'label i is class_names[i + 1]';
COMMENT ON COLUMN datasets.owner IS
    'the role that created the data set and owns its split tables; it (a member, or a superuser) may drop it';

CREATE TABLE splits (
    dataset  text NOT NULL REFERENCES datasets ON DELETE CASCADE,
    split    text NOT NULL CHECK (split IN ('train', 'test')),
    rel      regclass NOT NULL UNIQUE,
    count    bigint NOT NULL CHECK (count >= 0),
    height   integer CHECK (height BETWEEN 1 AND 16384),
    width    integer CHECK (width BETWEEN 1 AND 16384),
    channels integer CHECK (channels BETWEEN 1 AND 4),
    PRIMARY KEY (dataset, split),
    CHECK ((height IS NULL) = (width IS NULL) AND (height IS NULL) = (channels IS NULL))
);
COMMENT ON TABLE splits IS
    'the train and test split tables of each data set: row count and image shape (NULL when sizes vary)';
COMMENT ON COLUMN splits.rel IS 'the split table: id bigint (0..count-1), label integer, img imgtensor';

SELECT pg_catalog.pg_extension_config_dump('datasets', '');
SELECT pg_catalog.pg_extension_config_dump('splits', '');

-- The two writers of the catalogue are C functions: they check the caller's rights, then
-- create the split tables in this schema and write the catalogue with the rights of the
-- catalogue's owner (dataset.c). Creators need EXECUTE on create_dataset, nothing else.
CREATE FUNCTION create_dataset(name text, class_names text[],
                               train_count bigint, test_count bigint,
                               train_shape integer[] DEFAULT NULL,
                               test_shape integer[] DEFAULT NULL)
RETURNS TABLE (split text, rel regclass)
AS 'MODULE_PATHNAME', 'imgset_create_dataset' LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION create_dataset(text, text[], bigint, bigint, integer[], integer[]) IS
    'register a data set owned by the caller and create its empty split tables @extschema@.NAME_train / NAME_test, owned by the caller; returns them';
REVOKE EXECUTE ON FUNCTION create_dataset(text, text[], bigint, bigint, integer[], integer[]) FROM PUBLIC;

CREATE FUNCTION drop_dataset(name text) RETURNS void
AS 'MODULE_PATHNAME', 'imgset_drop_dataset' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION drop_dataset(text) IS
    'drop a data set (its owner, a member of the owning role, or a superuser): the split tables create_dataset made, by OID, and its catalogue rows';

CREATE FUNCTION split_table(dataset text, split text) RETURNS regclass
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r regclass;
BEGIN
    SELECT s.rel INTO r FROM @extschema@.splits s WHERE s.dataset = dataset AND s.split = split;
    IF r IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM @extschema@.datasets d WHERE d.name = dataset) THEN
            RAISE EXCEPTION 'split_table: data set "%" does not exist', dataset
                USING ERRCODE = 'undefined_object';
        END IF;
        RAISE EXCEPTION 'split_table: data set "%" has no split "%"', dataset, split
            USING ERRCODE = 'undefined_object', HINT = 'Splits are train and test.';
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION split_table(text, text) IS 'the table holding split train or test of a data set';

-- ---------------------------------------------------------------------------------------
-- Mini-batches
-- ---------------------------------------------------------------------------------------
CREATE TYPE batch AS (
    ids      bigint[],
    labels   integer[],
    height   integer,
    width    integer,
    channels integer,
    shapes   integer[],
    dtype    text,
    pixels   bytea
);
COMMENT ON TYPE batch IS
    'a mini-batch: ids and labels in the order asked, pixels packed N×H×W×C (height/width/channels '
    'when all images share a shape, else shapes N×3 and the images concatenated)';

CREATE FUNCTION imgset_batch(split regclass, ids bigint[],
                             height integer DEFAULT 0, width integer DEFAULT 0)
RETURNS batch
AS 'MODULE_PATHNAME', 'imgset_batch_ids' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgset_batch(regclass, bigint[], integer, integer) IS
    'the images with these ids, in this order, as one batch; height/width > 0 resize + center-crop each';

CREATE FUNCTION imgset_batch(split regclass, seed bigint, epoch integer, batch_no integer,
                             batch_size integer, rank integer DEFAULT 0, world integer DEFAULT 1,
                             height integer DEFAULT 0, width integer DEFAULT 0)
RETURNS batch
AS 'MODULE_PATHNAME', 'imgset_batch_epoch' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgset_batch(regclass, bigint, integer, integer, integer, integer, integer, integer, integer) IS
    'batch batch_no of epoch under seed, shuffled server-side (ids 0..N-1; rank r of world w takes positions r, r+w, …)';

CREATE FUNCTION imgset_batch_packed(split regclass, ids bigint[],
                                    height integer DEFAULT 0, width integer DEFAULT 0)
RETURNS bytea
AS 'MODULE_PATHNAME', 'imgset_batch_packed_ids' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgset_batch_packed(regclass, bigint[], integer, integer) IS
    'imgset_batch by ids as one packed bytea for clients: 32-byte header, pixels, ids, labels, shapes (README)';

CREATE FUNCTION imgset_batch_packed(split regclass, seed bigint, epoch integer, batch_no integer,
                                    batch_size integer, rank integer DEFAULT 0, world integer DEFAULT 1,
                                    height integer DEFAULT 0, width integer DEFAULT 0)
RETURNS bytea
AS 'MODULE_PATHNAME', 'imgset_batch_packed_epoch' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgset_batch_packed(regclass, bigint, integer, integer, integer, integer, integer, integer, integer) IS
    'the shuffled imgset_batch as one packed bytea for clients (README)';

CREATE FUNCTION imgset_shuffle_ids(n bigint, seed bigint, epoch integer, batch_no integer,
                                   batch_size integer, rank integer DEFAULT 0, world integer DEFAULT 1)
RETURNS bigint[]
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgset_shuffle_ids(bigint, bigint, integer, integer, integer, integer, integer) IS
    'the ids the shuffled imgset_batch reads for a split of n images, without reading them';

CREATE FUNCTION imgset_batch_count(n bigint, batch_size integer, world integer DEFAULT 1)
RETURNS bigint
AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION imgset_batch_count(bigint, integer, integer) IS
    'batches per rank in an epoch of n images (the last may be short; n % world images are dropped)';

-- ---------------------------------------------------------------------------------------
-- Models and in-database inference (infer.c)
-- ---------------------------------------------------------------------------------------
CREATE SEQUENCE model_version_seq;
COMMENT ON SEQUENCE model_version_seq IS
    'a new models.version for every model added or replaced (backends reload a model whose version changed)';

CREATE TABLE models (
    name        text PRIMARY KEY
                CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$'),
    arch        text NOT NULL,
    channels    integer NOT NULL CHECK (channels BETWEEN 1 AND 4),
    height      integer NOT NULL CHECK (height BETWEEN 1 AND 16384),
    width       integer NOT NULL CHECK (width BETWEEN 1 AND 16384),
    classes     integer NOT NULL CHECK (classes >= 1),
    class_names text[] NOT NULL
                CHECK (cardinality(class_names) = classes AND array_ndims(class_names) = 1
                       AND array_position(class_names, NULL) IS NULL),
    parameters  bigint NOT NULL CHECK (parameters >= 0),
    step        bigint NOT NULL CHECK (step >= 0),
    bytes       bigint NOT NULL CHECK (bytes > 0),
    chunks      integer NOT NULL CHECK (chunks >= 1),
    sha256      bytea NOT NULL CHECK (octet_length(sha256) = 32),
    version     bigint NOT NULL DEFAULT nextval('model_version_seq'),
    created     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT models_bytes_fit_chunks CHECK (bytes <= chunks::bigint * 67108864)
);
COMMENT ON TABLE models IS
    'trained models for imgset_predict(): architecture, input shape, classes; the checkpoint is in model_chunks';
COMMENT ON COLUMN models.class_names IS 'class i is class_names[i + 1] (from the checkpoint, else ''0''..''K-1'')';
COMMENT ON COLUMN models.bytes IS 'size of the safetensors checkpoint, stored in model_chunks';
COMMENT ON COLUMN models.version IS 'changes whenever the model is replaced; backends cache a parsed model per version';

CREATE TABLE model_chunks (
    model    text NOT NULL REFERENCES models ON DELETE CASCADE ON UPDATE CASCADE,
    chunk_no integer NOT NULL CHECK (chunk_no >= 0),
    data     bytea NOT NULL CHECK (octet_length(data) BETWEEN 1 AND 67108864),
    PRIMARY KEY (model, chunk_no)
);
-- Weights do not compress: keep them out of line without trying.
ALTER TABLE model_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
COMMENT ON TABLE model_chunks IS
    'the safetensors checkpoint of each model in chunks of at most 8 MB (add_model), in chunk_no order';

SELECT pg_catalog.pg_extension_config_dump('models', '');
SELECT pg_catalog.pg_extension_config_dump('model_chunks', '');
SELECT pg_catalog.pg_extension_config_dump('model_version_seq', '');

CREATE FUNCTION checkpoint_info(checkpoint bytea,
                                OUT arch text, OUT channels integer, OUT height integer,
                                OUT width integer, OUT classes integer, OUT class_names text[],
                                OUT parameters bigint, OUT step bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'imgset_checkpoint_info' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION checkpoint_info(bytea) IS
    'parse and check a safetensors checkpoint of imgset train: architecture, input shape, classes, trainable parameters, optimiser steps';

CREATE FUNCTION add_model(name text, checkpoint bytea, replace boolean DEFAULT false)
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
COMMENT ON FUNCTION add_model(text, bytea, boolean) IS
    'store a checkpoint of imgset train as model name (checked first, kept in 8 MB chunks); replace => true replaces an existing one';

CREATE FUNCTION drop_model(name text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    DELETE FROM @extschema@.models m WHERE m.name = name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'drop_model: model "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
COMMENT ON FUNCTION drop_model(text) IS 'remove a model and its checkpoint';

-- Inference reads imgset.models / model_chunks as the caller, so the functions are STABLE.
-- COST: one forward pass is worth thousands of operators; it lets the planner use parallel
-- workers for a prediction over a whole split.
CREATE FUNCTION imgset_predict(model text, img imgtensor) RETURNS integer
    AS 'MODULE_PATHNAME' LANGUAGE C STABLE STRICT PARALLEL SAFE COST 5000;
COMMENT ON FUNCTION imgset_predict(text, imgtensor) IS
    'the class index the model predicts for the image (argmax of the logits)';
CREATE FUNCTION imgset_predict_label(model text, img imgtensor) RETURNS text
    AS 'MODULE_PATHNAME' LANGUAGE C STABLE STRICT PARALLEL SAFE COST 5000;
COMMENT ON FUNCTION imgset_predict_label(text, imgtensor) IS
    'the class name the model predicts for the image';
CREATE FUNCTION imgset_forward(model text, img imgtensor) RETURNS real[]
    AS 'MODULE_PATHNAME' LANGUAGE C STABLE STRICT PARALLEL SAFE COST 5000;
COMMENT ON FUNCTION imgset_forward(text, imgtensor) IS
    'the model''s logits for the image, one per class (bit for bit those of imgset predict)';
CREATE FUNCTION imgset_proba(model text, img imgtensor) RETURNS real[]
    AS 'MODULE_PATHNAME' LANGUAGE C STABLE STRICT PARALLEL SAFE COST 5000;
COMMENT ON FUNCTION imgset_proba(text, imgtensor) IS
    'the softmax of the model''s logits for the image: class probabilities';

CREATE FUNCTION imgset_predict_batch(model text, batch bytea, group_size integer DEFAULT 1)
RETURNS integer[]
AS 'MODULE_PATHNAME', 'imgset_predict_batch_packed' LANGUAGE C STABLE STRICT PARALLEL SAFE COST 100000;
COMMENT ON FUNCTION imgset_predict_batch(text, bytea, integer) IS
    'the predicted class of every image of a packed batch (imgset_batch_packed), evaluated in groups of group_size images';
CREATE FUNCTION imgset_predict_batch(model text, batch batch, group_size integer DEFAULT 1)
RETURNS integer[]
AS 'MODULE_PATHNAME', 'imgset_predict_batch_composite' LANGUAGE C STABLE STRICT PARALLEL SAFE COST 100000;
COMMENT ON FUNCTION imgset_predict_batch(text, batch, integer) IS
    'the predicted class of every image of an imgset_batch value, evaluated in groups of group_size images';
CREATE FUNCTION imgset_forward_batch(model text, batch bytea, group_size integer DEFAULT 1)
RETURNS real[]
AS 'MODULE_PATHNAME', 'imgset_forward_batch_packed' LANGUAGE C STABLE STRICT PARALLEL SAFE COST 100000;
COMMENT ON FUNCTION imgset_forward_batch(text, bytea, integer) IS
    'the logits (N×K) of every image of a packed batch, evaluated in groups of group_size images';
CREATE FUNCTION imgset_forward_batch(model text, batch batch, group_size integer DEFAULT 1)
RETURNS real[]
AS 'MODULE_PATHNAME', 'imgset_forward_batch_composite' LANGUAGE C STABLE STRICT PARALLEL SAFE COST 100000;
COMMENT ON FUNCTION imgset_forward_batch(text, batch, integer) IS
    'the logits (N×K) of every image of an imgset_batch value, evaluated in groups of group_size images';

CREATE FUNCTION imgset_model_cache(OUT name text, OUT version bigint, OUT bytes bigint,
                                   OUT load_ms double precision, OUT calls bigint, OUT blas text)
RETURNS SETOF record
AS 'MODULE_PATHNAME' LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED ROWS 16;
COMMENT ON FUNCTION imgset_model_cache() IS
    'the models this backend holds parsed that the caller may read: version, memory, load time in ms, calls served, and the OpenBLAS kernel';
