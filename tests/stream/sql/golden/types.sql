CREATE TEMPORARY TABLE IF NOT EXISTS all_types (
  a BIGINT NOT NULL,
  b INT, c INTEGER, d SMALLINT, e TINYINT,
  f DOUBLE, g FLOAT, h DECIMAL(12, 3),
  i VARCHAR(10), j STRING, k CHAR(3),
  l BOOLEAN, m DATE, n TIMESTAMP(3), o TIMESTAMP_LTZ(3), p TIMESTAMP(3) WITH LOCAL TIME ZONE,
  q BYTES,
  r ROW<x INT, y STRING NOT NULL>, s ROW(x INT, y ARRAY<DOUBLE>),
  t ARRAY<ROW<k STRING, v BIGINT>>, u MAP<STRING, ARRAY<INT>>,
  `select` STRING COMMENT 'a reserved word, backquoted',
  PRIMARY KEY (a, b) NOT ENFORCED
) COMMENT 'every type' WITH ('connector' = 'datagen', 'number-of-rows' = '10');
