-- batch.sql — imgset_batch by ids and by (seed, epoch, batch), the shuffle, sharding, errors.
SET search_path = public, imgset;

-- By ids: in the order asked, duplicates allowed.
SELECT * FROM imgset_batch('imgset.toy_train', '{3,1,4,1}');
SELECT * FROM imgset_batch(split_table('toy', 'train'), ARRAY[5]::bigint[]);
-- Ragged split: per-image shapes and the images concatenated; or resized + cropped.
SELECT * FROM imgset_batch('imgset.toy_test', '{2,0,1}');
SELECT ids, labels, height, width, channels, shapes, length(pixels) FROM imgset_batch('imgset.toy_test', '{2,0,1}', 2, 2);
SELECT length(pixels) = 3 * 4 * 5 * 1 FROM imgset_batch('imgset.toy_test', '{0,1}', 4, 5);
-- The composite can be called in the select list too.
SELECT (imgset_batch('imgset.toy_train', '{0}')).labels;

-- The packed form for clients: one bytea — 32-byte header, pixels, ids, labels (, shapes).
SELECT encode(substr(p, 1, 32), 'hex') AS header, substr(p, 33, 16) AS pixels,
       encode(substr(p, 49), 'hex') AS ids_then_labels
FROM imgset_batch_packed('imgset.toy_train', '{3,1,4,1}') p;
SELECT encode(substr(p, 1, 32), 'hex') AS ragged_header, length(p) = 32 + 25 + 3 * (8 + 4 + 12) AS size,
       substr(p, 33, 25) = b.pixels AS same_pixels,
       encode(substr(p, 33 + 25 + 36), 'hex') AS shapes
FROM imgset_batch_packed('imgset.toy_test', '{2,0,1}') p, imgset_batch('imgset.toy_test', '{2,0,1}') b;
SELECT substr(p, 33, length(b.pixels)) = b.pixels AS same_pixels
FROM imgset_batch_packed('imgset.toy_test', '{2,0,1}', 3, 2) p, imgset_batch('imgset.toy_test', '{2,0,1}', 3, 2) b;
SELECT err($$SELECT imgset_batch_packed('imgset.toy_train', '{6}')$$);

-- The shuffle: a permutation of 0..N-1 per (seed, epoch), split into batches.
SELECT b, imgset_shuffle_ids(6, 42, 0, b, 4) FROM generate_series(0, 1) b;
SELECT array_agg(x ORDER BY x) = ARRAY(SELECT generate_series(0, 999)::bigint) AS permutation
FROM generate_series(0, 9) b, unnest(imgset_shuffle_ids(1000, 7, 3, b, 100)) x;
SELECT imgset_shuffle_ids(1000, 7, 3, 0, 100) <> imgset_shuffle_ids(1000, 7, 4, 0, 100) AS epochs_differ,
       imgset_shuffle_ids(1000, 7, 3, 0, 100) <> imgset_shuffle_ids(1000, 8, 3, 0, 100) AS seeds_differ,
       imgset_shuffle_ids(1000, 7, 3, 0, 100) = imgset_shuffle_ids(1000, 7, 3, 0, 100) AS repeatable;
-- Sharding (the contract in loaders/sampler.h): rank r of world w takes positions r, r+w, …
-- below w·floor(n/w); every rank gets floor(n/w) images, the n % w tail is dropped.
SELECT r, imgset_shuffle_ids(10, 1, 0, 0, 10, r, 3) FROM generate_series(0, 2) r;
SELECT (SELECT array_agg(x ORDER BY x) FROM generate_series(0, 2) r, unnest(imgset_shuffle_ids(10, 1, 0, 0, 10, r, 3)) x)
     = (SELECT array_agg(x ORDER BY x) FROM unnest((imgset_shuffle_ids(10, 1, 0, 0, 10))[1:9]) x)
       AS ranks_take_all_but_the_tail;
-- Worlds 2-5 over 23 images (floor(23/w) <> ceil(23/w)), batches of 4, two epochs: every
-- rank the same images and batches; rank r's batch b is the permutation's positions
-- (4b + i)·w + r, so the ranks are disjoint and cover all but the tail; one batch more is
-- refused on every rank; the tail differs between the epochs.
WITH perm AS (
    SELECT e, p.ord - 1 AS pos, p.id
    FROM generate_series(0, 1) e, unnest(imgset_shuffle_ids(23, 9, e, 0, 23)) WITH ORDINALITY p(id, ord)),
shard AS (
    SELECT w, e, r, b, s.ord - 1 AS i, s.id
    FROM generate_series(2, 5) w, generate_series(0, 1) e, generate_series(0, w - 1) r,
         generate_series(0, imgset_batch_count(23, 4, w) - 1) b,
         unnest(imgset_shuffle_ids(23, 9, e, b::int, 4, r, w)) WITH ORDINALITY s(id, ord)),
per_rank AS (SELECT w, e, r, count(*) AS images FROM shard GROUP BY w, e, r)
SELECT w, imgset_batch_count(23, 4, w) AS batches,
       (SELECT min(images) FROM per_rank q WHERE q.w = c.w) AS min_images,
       (SELECT max(images) FROM per_rank q WHERE q.w = c.w) AS max_images,
       (SELECT bool_and(s.id = p.id AND p.pos < w * (23 / w)) FROM shard s JOIN perm p
            ON p.e = s.e AND p.pos = (4 * s.b + s.i) * s.w + s.r WHERE s.w = c.w) AS positions,
       (SELECT count(DISTINCT (e, id)) FROM shard s WHERE s.w = c.w) AS distinct_ids,
       (SELECT bool_and(err(format('SELECT imgset_shuffle_ids(23, 9, 0, %s, 4, %s, %s)',
                                   imgset_batch_count(23, 4, w), r, w)) LIKE '22023:%')
        FROM generate_series(0, w - 1) r) AS past_end_refused,
       (SELECT array_agg(id ORDER BY id) FROM perm WHERE e = 0 AND pos >= w * (23 / w))
       IS DISTINCT FROM
       (SELECT array_agg(id ORDER BY id) FROM perm WHERE e = 1 AND pos >= w * (23 / w)) AS tails_differ
FROM generate_series(2, 5) c(w);
SELECT imgset_batch_count(10, 4), imgset_batch_count(10, 4, 3), imgset_batch_count(0, 4), imgset_batch_count(8, 4);

-- By (seed, epoch, batch): the same ids as imgset_shuffle_ids, with their pixels.
SELECT b, ids, labels, pixels FROM generate_series(0, 1) b, imgset_batch('imgset.toy_train', 42, 0, b, 4);
SELECT ids = imgset_shuffle_ids(6, 42, 0, 1, 4) FROM imgset_batch('imgset.toy_train', 42, 0, 1, 4);
SELECT ids, pixels FROM imgset_batch('imgset.toy_train', 42, 0, 0, 10, 1, 2);
SELECT substr(imgset_batch_packed('imgset.toy_train', 42, 0, 0, 10, 1, 2), 33, 12) = pixels AS packed_same
FROM imgset_batch('imgset.toy_train', 42, 0, 0, 10, 1, 2);
SELECT err($$SELECT imgset_batch_packed('imgset.toy_train', 42, 0, 9, 4)$$);

SELECT ids, shapes IS NULL AS fixed, height, length(pixels) FROM imgset_batch('imgset.toy_test', 5, 1, 0, 3, 0, 1, 3, 3);
SELECT ids, shapes FROM imgset_batch('imgset.toy_test', 5, 1, 0, 3);
-- Resized batches agree with resize_crop on each image.
SELECT pixels = (SELECT string_agg(resize_crop(img, 3, 2)::bytea, '' ORDER BY array_position(ARRAY[2,0,1], id::int))
                 FROM toy_test) AS same
FROM imgset_batch('imgset.toy_test', '{2,0,1}', 3, 2);
-- Compressed images are decoded into the batch.
CREATE TABLE comp (id bigint PRIMARY KEY, label integer, img imgtensor);
INSERT INTO comp VALUES (0, 1, imgset_compress(imgtensor(array_fill(5, ARRAY[4000]), 40, 100, 1), 'lz4')),
                        (1, 2, imgset_compress(imgtensor(array_fill(6, ARRAY[4000]), 40, 100, 1), 'zlib'));
SELECT labels, height, width, channels, length(pixels), md5(pixels) = md5(decode(repeat('05', 4000) || repeat('06', 4000), 'hex'))
FROM imgset_batch('comp', '{0,1}');

-- Rows changed after a first read are read again correctly (the TID cache is only a hint).
SELECT pixels FROM imgset_batch('imgset.toy_train', '{2}');
UPDATE toy_train SET img = 'uint8:2x2x1:09090909' WHERE id = 2;
SELECT pixels FROM imgset_batch('imgset.toy_train', '{2}');
BEGIN;
DELETE FROM toy_train WHERE id = 2;
INSERT INTO toy_train VALUES (2, 2, 'uint8:2x2x1:08080808');
SELECT pixels FROM imgset_batch('imgset.toy_train', '{2, 3}');
ROLLBACK;
SELECT pixels FROM imgset_batch('imgset.toy_train', '{2}');
VACUUM FULL toy_train;
SELECT pixels FROM imgset_batch('imgset.toy_train', '{2,3}');

-- Bad calls: each a clear error.
SELECT err($$SELECT imgset_batch('imgset.toy_train', '{}'::bigint[])$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', '{1,NULL}'::bigint[])$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', '{{1},{2}}'::bigint[])$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', '{6}')$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', '{-1}')$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', array_fill(0::bigint, ARRAY[1048577]))$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', '{1}', 2, 0)$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', '{1}', -2, -2)$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', 1, 0, 0, 0)$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', 1, 0, 0, 2000000000)$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', 1, 0, 2, 4)$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', 1, 0, -1, 4)$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', 1, -1, 0, 4)$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', 1, 0, 0, 4, 2, 2)$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', 1, 0, 0, 4, 0, 0)$$);
SELECT err($$SELECT imgset_batch('imgset.toy_train', 1, 0, 0, 4, 0, 7)$$);
SELECT err($$SELECT imgset_batch('imgset.nope', '{1}')$$);
SELECT err($$SELECT imgset_batch(0, '{1}')$$);
SELECT err($$SELECT imgset_batch('imgset.datasets', '{1}')$$);
SELECT err($$SELECT imgset_batch('imgset.splits_pkey', '{1}')$$);
SELECT err($$SELECT imgset_shuffle_ids(0, 1, 0, 0, 4)$$);
SELECT err($$SELECT imgset_batch_count(-1, 4)$$);
SELECT err($$SELECT imgset_batch_count(1, 0)$$);
SELECT err($$SELECT imgset_batch_count(1, 1, 0)$$);
SELECT imgset_batch(NULL, '{1}') IS NULL AS strict;
-- A table that is not a split, or a split without an index on id, or ids with a gap.
CREATE TABLE noindex (id bigint, label integer, img imgtensor);
INSERT INTO noindex VALUES (0, 0, 'uint8:1x1x1:00');
SELECT err($$SELECT imgset_batch('noindex', '{0}')$$);
CREATE TABLE wrongtype (id integer PRIMARY KEY, label integer, img imgtensor);
SELECT err($$SELECT imgset_batch('wrongtype', '{0}')$$);
CREATE TABLE nulls (id bigint PRIMARY KEY, label integer, img imgtensor);
INSERT INTO nulls VALUES (0, NULL, 'uint8:1x1x1:00'), (1, 1, NULL), (3, 0, 'uint8:1x1x1:00');
SELECT err($$SELECT imgset_batch('nulls', '{0}')$$);
SELECT err($$SELECT imgset_batch('nulls', '{1}')$$);
SELECT err($$SELECT imgset_batch('nulls', 0, 0, 0, 4)$$);
CREATE TABLE gap (id bigint PRIMARY KEY, label integer, img imgtensor);
INSERT INTO gap VALUES (0, 0, 'uint8:1x1x1:00'), (2, 0, 'uint8:1x1x1:02');
SELECT err($$SELECT imgset_batch('gap', 0, 0, 0, 3)$$);
SELECT ids FROM imgset_batch('gap', '{2,0}');
CREATE TABLE empty (id bigint PRIMARY KEY, label integer, img imgtensor);
SELECT err($$SELECT imgset_batch('empty', 0, 0, 0, 4)$$);
CREATE TABLE mixed_dtype (id bigint PRIMARY KEY, label integer, img imgtensor);
INSERT INTO mixed_dtype VALUES (0, 0, 'uint8:1x1x1:00'), (1, 0, 'float32:1x1x1:00000000');
SELECT err($$SELECT imgset_batch('mixed_dtype', '{0,1}')$$);
SELECT dtype, pixels FROM imgset_batch('mixed_dtype', '{1}');
DROP TABLE noindex, wrongtype, nulls, gap, empty, mixed_dtype, comp;
