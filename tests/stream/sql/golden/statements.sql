SET 'pipeline.name' = 'counts';
SET table.exec.source.idle-timeout = 5s;
/* a block
   comment */
CREATE TABLE src (k STRING, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH ('connector' = 'datagen');
CREATE TABLE sink (k STRING, n BIGINT) WITH ('connector' = 'blackhole');
CREATE TEMPORARY VIEW big AS SELECT k, v FROM src WHERE v > 10;
INSERT INTO sink SELECT k, COUNT(*) FROM big GROUP BY k;
INSERT INTO sink (k, n) SELECT k, SUM(v) FILTER (WHERE v > 100) FROM src GROUP BY k;
INSERT OVERWRITE sink SELECT k, COUNT(DISTINCT v) FROM src GROUP BY k;
EXECUTE STATEMENT SET
BEGIN
  INSERT INTO sink SELECT k, MIN(v) FROM src GROUP BY k;
  INSERT INTO sink SELECT k, MAX(v) FROM src GROUP BY k;
END;
