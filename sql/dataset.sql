-- dataset.sql — data sets as tables: create_dataset, split_table, drop_dataset.
SET search_path = public, imgset;

SELECT * FROM create_dataset('toy', '{cat,dog,"a \"quoted\" name"}', 6, 3, '{2,2,1}', NULL);
SELECT name, class_names FROM datasets;
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

-- Small fixed-size images are stored in the row; larger or ragged ones are TOASTed.
SELECT * FROM create_dataset('wide', '{a}', 1, 1, '{64,64,3}', '{32,32,3}');
SELECT c.relname, a.attstorage FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relnamespace = 'imgset'::regnamespace AND a.attname = 'img' ORDER BY 1;

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
SELECT name FROM datasets ORDER BY name;
