-- imgtensor_ops.sql — resize, center_crop, resize_crop, to_float, compression.
SET search_path = public, imgset;

-- Bilinear resize with half-pixel centres (as OpenCV INTER_LINEAR).
SELECT resize('uint8:2x2x1:000a1428', 4, 4)::integer[];
SELECT resize('uint8:4x4x1:00000000000000000000ffff0000ffff', 2, 2)::integer[];
SELECT resize('uint8:1x2x3:0000ffff0000', 1, 4);
SELECT resize('float32:1x2x1:0000000000002041', 1, 4)::real[];
-- 3x3 -> 5x7 against the same formula evaluated in exact rationals, rounded half up (no
-- value lies near a tie): source x = (x' + 0.5) * 3/7 - 0.5 clamped at 0, likewise y.
SELECT ARRAY(SELECT unnest(resize(t, 5, 7)::integer[])) =
       '{0,29,114,200,131,63,40,102,105,115,125,97,69,60,255,220,117,13,46,79,90,106,103,93,83,127,171,186,7,25,77,130,181,233,250}'::integer[]
       AS exact_bilinear,
       resize(t, 3, 3) = t AS identity
FROM (SELECT 'uint8:3x3x1:00c828ff0d5a0782fa'::imgtensor t) s;
SELECT err($$SELECT resize('uint8:1x1x1:00', 0, 1)$$);
SELECT err($$SELECT resize('uint8:1x1x1:00', 1, 16385)$$);
SELECT err($$SELECT resize('float32:1x1x4:00000000000000000000000000000000', 16384, 16384)$$);

-- center_crop: offsets rounded down.
SELECT center_crop('uint8:3x3x1:000102030405060708', 1, 1);
SELECT center_crop('uint8:4x4x1:000102030405060708090a0b0c0d0e0f', 2, 2);
SELECT center_crop('uint8:4x4x1:000102030405060708090a0b0c0d0e0f', 3, 1);
SELECT center_crop('float32:1x2x1:0000803f00000040', 1, 1)::real[];
SELECT err($$SELECT center_crop('uint8:2x2x1:00010203', 3, 1)$$);
SELECT err($$SELECT center_crop('uint8:2x2x1:00010203', 1, 0)$$);

-- resize_crop: aspect kept until the image covers the target, then the centre.
SELECT resize_crop('uint8:2x4x1:0000ffff0000ffff', 2, 2);
SELECT resize_crop('uint8:2x2x1:000a1428', 4, 4) = resize('uint8:2x2x1:000a1428', 4, 4) AS same;
SELECT height(r), width(r) FROM (SELECT resize_crop(resize('uint8:1x1x3:102030', 48, 100), 32, 32) r) s;
SELECT err($$SELECT resize_crop('uint8:1x1x1:00', 0, 0)$$);

-- to_float: (x/255 - mean) / std for uint8, (x - mean) / std for float32.
SELECT to_float('uint8:1x2x1:00ff', '{0.5}', '{0.5}')::real[];
SELECT to_float('uint8:1x1x3:00ff00', '{0,0.5,1}', '{1,0.5,0.25}')::real[];
SELECT to_float('float32:1x1x2:0000803f00000040', '{1}', '{2}')::real[];
SELECT dtype(to_float('uint8:1x1x1:00', '{0}', '{1}'));
SELECT err($$SELECT to_float('uint8:1x1x3:000000', '{0,0}', '{1}')$$);
SELECT err($$SELECT to_float('uint8:1x1x1:00', '{0}', '{0}')$$);
SELECT err($$SELECT to_float('uint8:1x1x1:00', '{NULL}', '{1}')$$);
SELECT err($$SELECT to_float('uint8:1x1x1:00', '{{0}}', '{1}')$$);

-- Compression: transparent on read, kept off when it does not help.
SELECT codec(c), nbytes(c), pg_column_size(c) < 1000 AS smaller, c = t AS same,
       c::text = t::text AS same_text, c::bytea = t::bytea AS same_bytes,
       height(c), resize(c, 2, 2) = resize(t, 2, 2) AS ops_decode
FROM (SELECT imgtensor(array_fill(7, ARRAY[3000]), 10, 100, 3) t) s,
     LATERAL (VALUES (imgset_compress(t, 'zlib')), (imgset_compress(t, 'lz4'))) v(c);
SELECT codec(imgset_compress('uint8:1x4x1:01020304', 'zlib'));
SELECT codec(imgset_compress(imgset_compress(imgtensor(array_fill(7, ARRAY[3000]), 10, 100, 3), 'lz4'), 'none'));
SELECT err($$SELECT imgset_compress('uint8:1x1x1:00', 'gzip')$$);
CREATE TABLE packed (img imgtensor);
INSERT INTO packed SELECT imgset_compress(imgtensor(array_fill(9, ARRAY[20000]), 100, 100, 2), 'lz4');
SELECT codec(img), nbytes(img), img::integer[] = array_fill(9, ARRAY[100, 100, 2]) AS same FROM packed;
DROP TABLE packed;
