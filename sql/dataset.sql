-- dataset.sql — data sets as tables: create_dataset, split_table, drop_dataset.
SET search_path = public, imgset;

SELECT * FROM create_dataset('toy', '{cat,dog,"a \"quoted\" name"}', 6, 3, '{2,2,1}', NULL);
SELECT name, class_names, owner = current_user::regrole AS mine FROM datasets;
-- The split tables belong to the data set's owner, who needed no right on schema imgset.
SELECT c.relname, c.relowner::regrole = current_user::regrole AS mine FROM pg_class c
WHERE c.oid IN (SELECT rel FROM splits WHERE dataset = 'toy') ORDER BY 1;
SELECT dataset, split, rel, count, height, width, channels FROM splits ORDER BY split DESC;
\d imgset.toy_train
SELECT split_table('toy', 'train'), split_table('toy', 'test');
SELECT obj_description('imgset.toy_train'::regclass);

-- The split tables check what the store writes.
INSERT INTO toy_train SELECT i, i % 3, imgtensor(ARRAY[i, i, i, i], 2, 2, 1) FROM generate_series(0, 5) i;
INSERT INTO toy_test VALUES (0, 0, 'uint8:1x1x1:00'), (1, 1, 'uint8:2x3x1:010101010101'),
                            (2, 2, ('uint8:3x2x3:' || repeat('02', 18))::imgtensor);
SELECT err($$INSERT INTO toy_train VALUES (6, 0, 'uint8:2x2x1:00000000')$$);
SELECT err($$INSERT INTO toy_train VALUES (-1, 0, 'uint8:2x2x1:00000000')$$);
SELECT err($$INSERT INTO toy_train VALUES (0, 0, 'uint8:2x2x1:00000000')$$);
SELECT err($$INSERT INTO toy_train VALUES (5, 3, 'uint8:2x2x1:00000000')$$);
SELECT err($$INSERT INTO toy_train VALUES (5, 0, 'uint8:1x1x1:00')$$);
SELECT err($$INSERT INTO toy_train VALUES (5, 0, NULL)$$);

-- Small fixed-size images are stored in the row: PLAIN when a float32 image fits too, MAIN
-- when only a uint8 one is sure to (a float32 one is then compressed or moved out); larger or
-- ragged ones are TOASTed.
SELECT * FROM create_dataset('wide', '{a}', 2, 2, '{64,64,3}', '{32,32,3}');
SELECT * FROM create_dataset('small', '{a}', 1, 1, '{16,16,3}', '{25,25,3}');
SELECT c.relname, a.attstorage FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'imgset'::regnamespace AND a.attname = 'img' ORDER BY 1;
-- Either dtype fits any of them (a float32 32x32x3 row is 12 kB: too big for PLAIN).
INSERT INTO wide_test VALUES (0, 0, to_float(resize('uint8:1x1x3:102030', 32, 32), '{0}', '{1}')),
                             (1, 0, resize('uint8:1x1x3:102030', 32, 32));
INSERT INTO small_train VALUES (0, 0, to_float(resize('uint8:1x1x3:102030', 16, 16), '{0}', '{1}'));
INSERT INTO small_test VALUES (0, 0, to_float(resize('uint8:1x1x3:102030', 25, 25), '{0}', '{1}'));
SELECT id, dtype(img), nbytes(img) FROM wide_test ORDER BY id;
SELECT dtype(img), nbytes(img) FROM small_train UNION ALL SELECT dtype(img), nbytes(img) FROM small_test;

-- Bad input.
SELECT err($$SELECT create_dataset('toy', '{a}', 1, 1)$$);
SELECT err($$SELECT create_dataset('bad name', '{a}', 1, 1)$$);
SELECT err($$SELECT create_dataset('', '{a}', 1, 1)$$);
SELECT err($$SELECT create_dataset(repeat('x', 49), '{a}', 1, 1)$$);
SELECT err($$SELECT create_dataset('.x', '{a}', 1, 1)$$);
SELECT err($$SELECT create_dataset('x', '{}', 1, 1)$$);
SELECT err($$SELECT create_dataset('x', '{{a},{b}}', 1, 1)$$);
SELECT err($$SELECT create_dataset('x', '{a,NULL}', 1, 1)$$);
SELECT err($$SELECT create_dataset('x', '{a}', -1, 1)$$);
SELECT err($$SELECT create_dataset('x', '{a}', 1, 1, '{1,1}')$$);
SELECT err($$SELECT create_dataset('x', '{a}', 1, 1, '{1,1,5}')$$);
SELECT err($$SELECT create_dataset('x', '{a}', 1, 1, NULL, '{0,1,1}')$$);
SELECT err($$SELECT create_dataset(NULL, '{a}', 1, 1)$$);
SELECT err($$SELECT split_table('nope', 'train')$$);
SELECT err($$SELECT split_table('toy', 'val')$$);
SELECT err($$SELECT drop_dataset('nope')$$);
SELECT count(*) FROM datasets WHERE name = 'x';

-- A failed create leaves nothing behind.
BEGIN;
SELECT * FROM create_dataset('half', '{a}', 1, 1);
ROLLBACK;
SELECT count(*) FROM datasets WHERE name = 'half';
SELECT to_regclass('imgset.half_train');

SELECT drop_dataset('wide');
SELECT to_regclass('imgset.wide_train'), to_regclass('imgset.wide_test');
-- A split table dropped by hand is skipped; the other one and the rows go.
DROP TABLE small_test;
SELECT drop_dataset('small');
SELECT to_regclass('imgset.small_train'), count(*) FROM splits WHERE dataset = 'small';
-- drop_dataset drops the tables create_dataset made, by OID: a table renamed in the meantime
-- goes, one that took its old name stays.
SELECT * FROM create_dataset('moved', '{a}', 1, 1);
ALTER TABLE moved_train RENAME TO moved_train_renamed;
CREATE TABLE imgset.moved_train (x int);
SELECT drop_dataset('moved');
SELECT to_regclass('imgset.moved_train_renamed') AS renamed, to_regclass('imgset.moved_train') AS lookalike;
DROP TABLE imgset.moved_train;
SELECT name FROM datasets ORDER BY name;
