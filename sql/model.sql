-- model.sql — models in the database and in-database inference: checkpoint_info, add_model,
-- drop_model, imgset_predict / _label / imgset_forward / imgset_proba, the batched forms over
-- imgset_batch, the per-backend cache, and bad input (SQLSTATE + message).
SET search_path = public, imgset;

CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || coalesce(' | ' || nullif(detail, ''), '');
END $$;

-- A checkpoint as `imgset train --save` writes it (safetensors: 8-byte header length, JSON
-- header with pg_imgset metadata, F32 tensors), built here for an mlp on 2x2x3 images.
-- Big-endian 4- or 8-byte groups (float4send, int8send) turned little-endian, in one pass.
CREATE FUNCTION pg_temp.swap4(b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT decode(regexp_replace(encode(b, 'hex'), '(..)(..)(..)(..)', '\4\3\2\1', 'g'), 'hex') $$;
CREATE FUNCTION pg_temp.u64le(x bigint) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT decode(regexp_replace(encode(int8send(x), 'hex'), '(..)(..)(..)(..)(..)(..)(..)(..)', '\8\7\6\5\4\3\2\1'), 'hex') $$;
-- A safetensors file: metadata, then F32 tensors [name, shape] filled with a fixed pattern.
CREATE FUNCTION pg_temp.safetensors(meta jsonb, tensors jsonb, seed integer) RETURNS bytea
LANGUAGE plpgsql AS $$
DECLARE
    header jsonb := jsonb_build_object('__metadata__', meta);
    data bytea := '';
    t jsonb;
    n bigint;
    off bigint := 0;
    h bytea;
    ti integer := 0;
    scale numeric;
BEGIN
    FOR t IN SELECT jsonb_array_elements(tensors) LOOP
        SELECT coalesce(round(exp(sum(ln(v::numeric)))), 1) INTO n FROM jsonb_array_elements_text(t -> 1) v;
        -- values in +-1.7/sqrt(fan in) (biases +-0.1), a fixed pattern per tensor and seed
        scale := CASE WHEN jsonb_array_length(t -> 1) = 1 THEN 0.1
                      ELSE 1.7 / sqrt((t -> 1 ->> 1)::numeric) END;
        data := data || pg_temp.swap4((SELECT string_agg(float4send(((hashint8(k * 1009 + ti * 100003 + seed * 7919) % 10007) / 10007.0 * scale)::real), ''::bytea ORDER BY k)
                                      FROM generate_series(0, n - 1) k));
        header := header || jsonb_build_object(t ->> 0, jsonb_build_object('dtype', 'F32', 'shape', t -> 1,
                                                                       'data_offsets', jsonb_build_array(off, off + 4 * n)));
        off := off + 4 * n;
        ti := ti + 1;
    END LOOP;
    h := convert_to(header::text, 'UTF8');
    RETURN pg_temp.u64le(length(h)) || h || data;
END $$;
-- An mlp checkpoint for 2x2x3 images and 3 classes; meta overrides the metadata (null removes).
CREATE FUNCTION pg_temp.mlp(seed integer DEFAULT 1, meta jsonb DEFAULT '{}', d integer DEFAULT 12, k integer DEFAULT 3)
RETURNS bytea LANGUAGE sql AS $$
SELECT pg_temp.safetensors(
    jsonb_strip_nulls(jsonb_build_object('format', 'pg_imgset-checkpoint', 'version', '1', 'arch', 'mlp',
                       'channels', '3', 'height', '2', 'width', '2', 'classes', k::text, 'seed', '1',
                       'step', '7', 'sampler_seed', '1', 'sampler_epoch', '1', 'sampler_position', '0',
                       'class_names', '["cat","dog","bird"]') || meta),
    jsonb_build_array(jsonb_build_array('fc1.weight', jsonb_build_array(256, d)),
                      jsonb_build_array('fc1.bias', jsonb_build_array(256)),
                      jsonb_build_array('fc2.weight', jsonb_build_array(128, 256)),
                      jsonb_build_array('fc2.bias', jsonb_build_array(128)),
                      jsonb_build_array('fc3.weight', jsonb_build_array(k, 128)),
                      jsonb_build_array('fc3.bias', jsonb_build_array(k))),
    seed) $$;

-- What a checkpoint holds; parsing checks all of it.
SELECT * FROM checkpoint_info(pg_temp.mlp());
SELECT length(pg_temp.mlp()) AS checkpoint_bytes;

-- Adding a model: checked, stored in chunks, versioned.
SELECT name, arch, channels, height, width, classes, class_names, parameters, step, bytes, chunks,
       version, sha256 = sha256(pg_temp.mlp()) AS sha256_ok
FROM add_model('tiny', pg_temp.mlp());
SELECT model, chunk_no, length(data) FROM model_chunks ORDER BY 1, 2;
SELECT string_agg(data, ''::bytea ORDER BY chunk_no) = pg_temp.mlp() AS chunks_are_the_checkpoint
FROM model_chunks WHERE model = 'tiny';
SELECT pg_temp.err($$SELECT add_model('tiny', pg_temp.mlp())$$);
SELECT pg_temp.err($$SELECT add_model('bad name!', pg_temp.mlp())$$);
SELECT pg_temp.err($$SELECT add_model(NULL, pg_temp.mlp())$$);
-- Without class names in the checkpoint, the classes are called '0'..'K-1'.
SELECT class_names FROM add_model('unnamed', pg_temp.mlp(2, '{"class_names": null}'));

-- Images: 2x2x3 uint8, and others to show what the functions do with them.
CREATE TEMP TABLE imgs AS
SELECT i, imgtensor(ARRAY(SELECT ((i * 53 + j * 29 + i * j * 7) % 256) FROM generate_series(0, 11) j), 2, 2, 3) AS img
FROM generate_series(0, 9) i;

SELECT i, imgset_predict('tiny', img) AS class, imgset_predict_label('tiny', img) AS label,
       ARRAY(SELECT round(x::numeric, 4) FROM unnest(imgset_forward('tiny', img)) x) AS logits,
       ARRAY(SELECT round(x::numeric, 4) FROM unnest(imgset_proba('tiny', img)) x) AS proba
FROM imgs ORDER BY i;
-- The class is the argmax of the logits; the probabilities are their softmax and sum to 1.
SELECT bool_and(imgset_predict('tiny', img) + 1 = (SELECT k FROM unnest(imgset_forward('tiny', img)) WITH ORDINALITY u(x, k) ORDER BY x DESC, k LIMIT 1)) AS argmax,
       bool_and(abs((SELECT sum(x) FROM unnest(imgset_proba('tiny', img)) x) - 1) < 1e-6) AS proba_sums_to_1,
       bool_and(imgset_predict_label('tiny', img) = (SELECT class_names[imgset_predict('tiny', img) + 1] FROM models WHERE name = 'tiny')) AS label_is_class_name
FROM imgs;
-- Compressed images are decoded first: the same logits.
SELECT bool_and(imgset_forward('tiny', imgset_compress(img, 'zlib'))::text = imgset_forward('tiny', img)::text) AS compressed_same
FROM imgs;
-- float32 images are taken as already normalised: to_float with mean = std = 0.5 is what the
-- trainer's loader does, so the class is the same (the logits agree to rounding).
SELECT bool_and(imgset_predict('tiny', to_float(img, '{0.5}', '{0.5}')) = imgset_predict('tiny', img)) AS same_class,
       max((SELECT max(abs(a - b)) FROM unnest(imgset_forward('tiny', to_float(img, '{0.5}', '{0.5}')),
                                               imgset_forward('tiny', img)) u(a, b))) < 1e-5 AS close_logits
FROM imgs;
-- Images of another size are resized + center-cropped to the model's 2x2 like the loader.
SELECT imgset_predict('tiny', imgtensor(ARRAY(SELECT (j * 17) % 256 FROM generate_series(0, 4 * 6 * 3 - 1) j), 4, 6, 3)) AS from_4x6,
       imgset_predict('tiny', imgtensor(ARRAY(SELECT (j * 17) % 256 FROM generate_series(0, 2) j), 1, 1, 3)) AS from_1x1;
-- A channel mismatch is an error; so is a float32 image of another size.
SELECT pg_temp.err($$SELECT imgset_predict('tiny', 'uint8:2x2x1:00010203')$$);
SELECT pg_temp.err($$SELECT imgset_forward('tiny', 'float32:1x1x3:000000000000000000000000')$$);
SELECT pg_temp.err($$SELECT imgset_predict('nothere', 'uint8:1x1x3:000000')$$);
SELECT imgset_predict(NULL, 'uint8:1x1x3:000000') IS NULL AS strict_model, imgset_predict('tiny', NULL) IS NULL AS strict_img;

-- Batches from imgset_batch (packed and composite): one class per image, the same as one call
-- per image; the logits too, bit for bit, when evaluated one image at a time (group_size 1).
SELECT split, rel FROM create_dataset('mtoy', '{cat,dog,bird}', 10, 3, '{2,2,3}', NULL) ORDER BY 1;
INSERT INTO mtoy_train SELECT i, i % 3, img FROM imgs;
INSERT INTO mtoy_test VALUES
    (0, 0, imgtensor(ARRAY(SELECT (j * 17) % 256 FROM generate_series(0, 4 * 6 * 3 - 1) j), 4, 6, 3)),
    (1, 1, (SELECT img FROM imgs WHERE i = 3)),
    (2, 2, imgtensor(ARRAY(SELECT (j * 5) % 256 FROM generate_series(0, 3 * 3 * 3 - 1) j), 3, 3, 3));
SELECT imgset_predict_batch('tiny', imgset_batch_packed('mtoy_train', '{0,1,2,3,4,5,6,7,8,9}')) AS packed,
       imgset_predict_batch('tiny', imgset_batch('mtoy_train', '{0,1,2,3,4,5,6,7,8,9}')) AS composite,
       ARRAY(SELECT imgset_predict('tiny', img) FROM imgs ORDER BY i) AS one_by_one;
SELECT imgset_forward_batch('tiny', imgset_batch_packed('mtoy_train', '{3,8}'))::text =
       ARRAY[imgset_forward('tiny', (SELECT img FROM imgs WHERE i = 3)),
             imgset_forward('tiny', (SELECT img FROM imgs WHERE i = 8))]::text AS group_1_is_per_image,
       array_dims(imgset_forward_batch('tiny', imgset_batch('mtoy_train', '{3,8,1}'), 2)) AS dims;
-- Larger groups: one forward pass per group (the low bits may differ from one at a time; the
-- classes here do not).
SELECT imgset_predict_batch('tiny', imgset_batch_packed('mtoy_train', '{0,1,2,3,4,5,6,7,8,9}'), 4) AS groups_of_4;
-- A ragged batch (mixed sizes) is resized per image, like imgset_predict on each.
SELECT imgset_predict_batch('tiny', imgset_batch_packed('mtoy_test', '{0,1,2}')) AS ragged,
       ARRAY(SELECT imgset_predict('tiny', img) FROM mtoy_test ORDER BY id) AS one_by_one;
-- A shuffled batch, as a training loop would ask for it.
SELECT (SELECT ids FROM imgset_batch('mtoy_train', 7, 0, 0, 4)) AS ids,
       imgset_predict_batch('tiny', imgset_batch('mtoy_train', 7, 0, 0, 4)) AS classes;
-- An empty composite batch gives an empty result.
SELECT imgset_predict_batch('tiny', ROW('{}', '{}', 2, 2, 3, NULL, 'uint8', ''::bytea)::batch) AS empty;

-- Bad batches.
SELECT pg_temp.err($$SELECT imgset_predict_batch('tiny', '\x00'::bytea)$$);
SELECT pg_temp.err($$SELECT imgset_predict_batch('tiny', substr(imgset_batch_packed('mtoy_train', '{0,1}'), 1, 40))$$);
SELECT pg_temp.err($$SELECT imgset_predict_batch('tiny', overlay(imgset_batch_packed('mtoy_train', '{0}') placing '\x09'::bytea from 5))$$);
SELECT pg_temp.err($$SELECT imgset_predict_batch('tiny', overlay(imgset_batch_packed('mtoy_train', '{0}') placing '\x00000002'::bytea from 9))$$);
SELECT pg_temp.err($$SELECT imgset_predict_batch('tiny', imgset_batch_packed('mtoy_train', '{0}'), 0)$$);
SELECT pg_temp.err($$SELECT imgset_predict_batch('tiny', imgset_batch_packed('mtoy_train', '{0}'), 100000)$$);
SELECT pg_temp.err($$SELECT imgset_predict_batch('tiny', ROW('{0}', '{0}', 2, 2, 3, NULL, 'uint8', '\x0001'::bytea)::batch)$$);
SELECT pg_temp.err($$SELECT imgset_predict_batch('tiny', ROW('{0}', '{0}', 2, 2, 3, NULL, 'int16', '\x00'::bytea)::batch)$$);
SELECT pg_temp.err($$SELECT imgset_predict_batch('tiny', ROW('{0}', '{0}', NULL, NULL, NULL, '{{2,2,3}}', 'uint8', '\x00'::bytea)::batch)$$);
SELECT pg_temp.err($$SELECT imgset_predict_batch('tiny', ROW('{0,1}', '{0}', 2, 2, 3, NULL, 'uint8', decode(repeat('00', 12), 'hex'))::batch)$$);
SELECT pg_temp.err($$SELECT imgset_predict_batch('tiny', ROW('{0}', '{0}', 2, 2, 1, NULL, 'uint8', '\x00000000'::bytea)::batch)$$);

-- Bad checkpoints: each a clear error with its SQLSTATE.
SELECT pg_temp.err($$SELECT checkpoint_info('\x00')$$);
SELECT pg_temp.err($$SELECT checkpoint_info(substr(pg_temp.mlp(), 1, length(pg_temp.mlp()) - 100))$$);
SELECT pg_temp.err($$SELECT checkpoint_info(pg_temp.mlp() || '\x00'::bytea)$$);
SELECT pg_temp.err($$SELECT checkpoint_info(pg_temp.mlp(1, '{"format": "other"}'))$$);
SELECT pg_temp.err($$SELECT checkpoint_info(pg_temp.mlp(1, '{"arch": "vgg16"}'))$$);
SELECT pg_temp.err($$SELECT checkpoint_info(pg_temp.mlp(1, '{"height": "3"}'))$$);
SELECT pg_temp.err($$SELECT checkpoint_info(pg_temp.mlp(1, '{"channels": "5"}', 20))$$);
SELECT pg_temp.err($$SELECT checkpoint_info(pg_temp.mlp(1, '{"class_names": "[\"a\"]"}'))$$);
SELECT pg_temp.err($$SELECT checkpoint_info(pg_temp.mlp(1, '{"arch": "cnn-small"}'))$$);
-- resnet8's weights fit any input size, but not its activations: refused before any use.
SELECT pg_temp.err($$SELECT checkpoint_info(pg_temp.mlp(1, '{"arch": "resnet8", "height": "16384", "width": "16384"}'))$$);
SELECT pg_temp.err($$SELECT add_model('broken', '\x0102'::bytea)$$);
SELECT count(*) AS nothing_stored FROM models WHERE name = 'broken';

-- The cache: this backend holds the models it used, by version.
SELECT name, version, bytes > 0 AS has_bytes, load_ms >= 0 AS timed, calls > 0 AS used,
       blas IS NOT NULL AS blas
FROM imgset_model_cache() ORDER BY name;
-- Replacing a model: a new version, and the next call uses the new weights.
CREATE TEMP TABLE before AS SELECT i, imgset_forward('tiny', img) AS logits FROM imgs;
SELECT name, version FROM add_model('tiny', pg_temp.mlp(2), replace => true);
SELECT count(*) FILTER (WHERE b.logits::text <> imgset_forward('tiny', img)::text) AS changed
FROM imgs JOIN before b USING (i);
SELECT name, version, calls FROM imgset_model_cache() WHERE name = 'tiny';
-- Replacing it back gives the old logits again (bit for bit).
SELECT version FROM add_model('tiny', pg_temp.mlp(), replace => true);
SELECT bool_and(b.logits::text = imgset_forward('tiny', img)::text) AS same_as_before
FROM imgs JOIN before b USING (i);
-- A rolled-back replacement is not used afterwards.
BEGIN;
SELECT version FROM add_model('tiny', pg_temp.mlp(3), replace => true);
SELECT bool_and(b.logits::text <> imgset_forward('tiny', img)::text) AS new_weights_inside
FROM imgs JOIN before b USING (i);
ROLLBACK;
SELECT bool_and(b.logits::text = imgset_forward('tiny', img)::text) AS old_weights_after_rollback
FROM imgs JOIN before b USING (i);

-- Damaged storage is detected (XX001), never used.
SELECT version FROM add_model('victim', pg_temp.mlp());
UPDATE model_chunks SET data = overlay(data placing '\xff'::bytea from 5000) WHERE model = 'victim';
SELECT pg_temp.err($$SELECT imgset_predict('victim', 'uint8:2x2x3:000000000000000000000000')$$);
DELETE FROM model_chunks WHERE model = 'victim';
SELECT pg_temp.err($$SELECT imgset_predict('victim', 'uint8:2x2x3:000000000000000000000000')$$);
SELECT version FROM add_model('victim', pg_temp.mlp(), replace => true);
UPDATE models SET height = 3 WHERE name = 'victim';
SELECT pg_temp.err($$SELECT imgset_predict('victim', 'uint8:2x2x3:000000000000000000000000')$$);

-- Dropping.
SELECT drop_model('victim');
SELECT pg_temp.err($$SELECT imgset_predict('victim', 'uint8:2x2x3:000000000000000000000000')$$);
SELECT pg_temp.err($$SELECT drop_model('victim')$$);
SELECT count(*) AS chunks_left FROM model_chunks WHERE model = 'victim';
SELECT name, version, class_names FROM models ORDER BY name;
