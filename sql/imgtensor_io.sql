-- imgtensor_io.sql — the extension, the imgtensor type's text input/output and its typmod.
CREATE EXTENSION pg_imgset;
SET search_path = public, imgset;

-- err(sql): run a statement and show 'SQLSTATE: message | detail' of its error (or 'no error').
CREATE FUNCTION public.err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || coalesce(' | ' || nullif(detail, ''), '');
END $$;

-- Text round trips exactly.
SELECT 'uint8:1x2x1:00ff'::imgtensor;
SELECT 'uint8:2x2x3:000102030405060708090A0B'::imgtensor;
SELECT '  uint8:1x1x4:deadbeef  '::imgtensor;
SELECT 'float32:1x2x1:0000803f000000c0'::imgtensor;
SELECT 'float32:1x2x1:0000803f000000c0'::imgtensor::real[];
SELECT t::text::imgtensor = t AS round_trip
FROM (VALUES ('uint8:3x2x1:0102030405ff'::imgtensor), ('float32:1x1x2:0000c07f0000807f')) v(t);
SELECT 'uint8:1x1x1:07'::imgtensor::text = 'uint8:1x1x1:07';

-- Typmod: checked on input, assignment and explicit casts.
SELECT 'uint8:1x2x1:00ff'::imgtensor(1,2,1);
SELECT err($$SELECT 'uint8:1x2x1:00ff'::imgtensor(2,1,1)$$);
CREATE TABLE typed (id int, img imgtensor(2,2,1));
\d typed
INSERT INTO typed VALUES (1, 'uint8:2x2x1:01020304');
SELECT err($$INSERT INTO typed VALUES (2, 'uint8:1x2x1:0102')$$);
SELECT err($$INSERT INTO typed SELECT 3, 'uint8:1x2x1:0102'::imgtensor$$);
SELECT err($$UPDATE typed SET img = 'uint8:4x1x1:01020304'::imgtensor$$);
SELECT img::imgtensor(2,2,1) FROM typed;
SELECT err($$SELECT img::imgtensor(1,4,1) FROM typed$$);
SELECT * FROM typed;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'typed'::regclass AND attname = 'img';
SELECT NULL::imgtensor(16384,16384,4) IS NULL AS largest_typmod;
SELECT err($$SELECT NULL::imgtensor(0,1,1)$$);
SELECT err($$SELECT NULL::imgtensor(16385,1,1)$$);
SELECT err($$SELECT NULL::imgtensor(1,1,5)$$);
SELECT err($$SELECT NULL::imgtensor(1,1)$$);
SELECT err($$SELECT NULL::imgtensor(1,1,1,1)$$);
SELECT err($$SELECT NULL::imgtensor(-1,2,3)$$);
DROP TABLE typed;

-- Malformed literals: 22P02 naming the type.
SELECT err($$SELECT ''::imgtensor$$);
SELECT err($$SELECT 'uint16:1x1x1:00'::imgtensor$$);
SELECT err($$SELECT 'uint8'::imgtensor$$);
SELECT err($$SELECT 'uint8:'::imgtensor$$);
SELECT err($$SELECT 'uint8:1x1:00'::imgtensor$$);
SELECT err($$SELECT 'uint8:1x1x1'::imgtensor$$);
SELECT err($$SELECT 'uint8:x1x1:00'::imgtensor$$);
SELECT err($$SELECT 'uint8:+1x1x1:00'::imgtensor$$);
SELECT err($$SELECT 'uint8:1x1x1:0'::imgtensor$$);
SELECT err($$SELECT 'uint8:1x1x1:0g'::imgtensor$$);
SELECT err($$SELECT 'uint8:1x1x1:000'::imgtensor$$);
SELECT err($$SELECT 'uint8:1x1x1:00 00'::imgtensor$$);
SELECT err($$SELECT 'uint8:1x2x1:00'::imgtensor$$);
SELECT err($$SELECT 'float32:1x1x1:000000'::imgtensor$$);
SELECT err($$SELECT 'UINT8:1x1x1:00'::imgtensor$$);
SELECT err(format('SELECT %L::imgtensor', 'uint8:1x1x1:' || repeat('00', 1000)));
-- Shapes out of range: 22023; too large for one value: 54000.
SELECT err($$SELECT 'uint8:0x1x1:'::imgtensor$$);
SELECT err($$SELECT 'uint8:1x16385x1:00'::imgtensor$$);
SELECT err($$SELECT 'uint8:1x1x5:00'::imgtensor$$);
SELECT err($$SELECT 'uint8:1x1x0:'::imgtensor$$);
SELECT err($$SELECT 'uint8:99999x1x1:00'::imgtensor$$);
SELECT err($$SELECT 'uint8:999999x1x1:00'::imgtensor$$);
SELECT err($$SELECT 'float32:16384x16384x4:00'::imgtensor$$);
SELECT err($$SELECT 'uint8:16384x16384x4:00'::imgtensor$$);
