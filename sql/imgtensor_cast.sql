-- imgtensor_cast.sql — casts from/to bytea and arrays, accessors, equality.
SET search_path = public, imgset;

-- bytea ⇄ imgtensor
SELECT imgtensor('\x000102030405'::bytea, 1, 2, 3);
SELECT '\x01020304'::bytea::imgtensor(2,2,1);
SELECT 'uint8:2x1x2:0a0b0c0d'::imgtensor::bytea;
SELECT imgtensor_to_bytea('float32:1x1x1:0000803f');
SELECT err($$SELECT '\x0102'::bytea::imgtensor$$);
SELECT err($$SELECT '\x0102'::bytea::imgtensor(2,2,1)$$);
SELECT err($$SELECT imgtensor('\x01'::bytea, 0, 1, 1)$$);
SELECT err($$SELECT imgtensor('\x01'::bytea, 1, 1, 5)$$);
SELECT imgtensor(NULL::bytea, 1, 1, 1) IS NULL AS strict;

-- integer[] / real[] → imgtensor (any array shape with H*W*C elements, channels-last order)
SELECT imgtensor(ARRAY[0, 128, 255, 7], 2, 2, 1);
SELECT ARRAY[[1, 2], [3, 4]]::imgtensor(1,1,4);
SELECT imgtensor(ARRAY[0.5, -1, 3.25]::real[], 1, 1, 3);
SELECT ARRAY[1.5, 2.5]::real[]::imgtensor(2,1,1);
SELECT err($$SELECT ARRAY[1,2,3]::imgtensor$$);
SELECT err($$SELECT imgtensor(ARRAY[1,2,3], 2, 2, 1)$$);
SELECT err($$SELECT imgtensor(ARRAY[1,NULL,3,4], 2, 2, 1)$$);
SELECT err($$SELECT imgtensor(ARRAY[1,256,3,4], 2, 2, 1)$$);
SELECT err($$SELECT imgtensor(ARRAY[-1,2,3,4], 2, 2, 1)$$);
SELECT err($$SELECT imgtensor('{}'::int[], 1, 1, 1)$$);
SELECT err($$SELECT imgtensor(ARRAY[1.0,NULL]::real[], 2, 1, 1)$$);

-- imgtensor → integer[] / real[] (H×W×C arrays)
SELECT 'uint8:2x2x1:00010203'::imgtensor::integer[];
SELECT imgtensor_to_float4('uint8:1x2x2:00ff1020');
SELECT 'float32:1x1x2:0000803f0000c0bf'::imgtensor::real[];
SELECT err($$SELECT 'float32:1x1x1:0000803f'::imgtensor::integer[]$$);
SELECT (imgtensor(a, 2, 3, 2)::integer[])[2][3][1] FROM (SELECT array_agg(i) a FROM generate_series(0, 11) i) s;

-- Accessors
SELECT height(t), width(t), channels(t), dtype(t), codec(t), nbytes(t)
FROM (VALUES ('uint8:2x3x1:000102030405'::imgtensor),
             ('float32:1x1x2:0000803f0000c0bf'::imgtensor)) v(t);
SELECT height(NULL::imgtensor) IS NULL AS strict;

-- Accessors on a TOASTed value read only its header: they work on a value stored
-- out of line, and give the same answers as on the value in memory.
CREATE TABLE big (img imgtensor);
INSERT INTO big SELECT resize(imgtensor(ARRAY[0, 50, 100, 255], 2, 2, 1), 300, 200);
SELECT pg_column_size(img) >= 60000 AS stored_uncompressed, height(img), width(img), channels(img),
       dtype(img), codec(img), nbytes(img)
FROM big;
SELECT img = resize(imgtensor(ARRAY[0, 50, 100, 255], 2, 2, 1), 300, 200) AS same FROM big;
SELECT attstorage FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'img';
DROP TABLE big;

-- Equality ignores compression, not dtype or shape.
SELECT 'uint8:1x2x1:0102'::imgtensor = 'uint8:1x2x1:0102'::imgtensor AS eq,
       'uint8:1x2x1:0102'::imgtensor = 'uint8:2x1x1:0102'::imgtensor AS eq_shape,
       'uint8:1x2x1:0102'::imgtensor <> 'uint8:1x2x1:0103'::imgtensor AS ne,
       'uint8:1x1x4:0000803f'::imgtensor = 'float32:1x1x1:0000803f'::imgtensor AS eq_dtype;
