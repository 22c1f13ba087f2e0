CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1.5' SECOND) WITH ('connector' = 'datagen');
CREATE TABLE out (a BIGINT, ws TIMESTAMP(3), we TIMESTAMP(3), n BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO out
SELECT auction, window_start, window_end, COUNT(*)
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' MINUTES)) AS w
GROUP BY auction, window_start, window_end;
INSERT INTO out
SELECT auction, window_start, window_end, COUNT(*)
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' HOUR, INTERVAL '15' MINUTE))
GROUP BY auction, window_start, window_end;
INSERT INTO out
SELECT auction, window_start, window_end, SUM(price)
FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
INSERT INTO out
SELECT auction, window_start, window_end, MAX(price)
FROM TABLE(CUMULATE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '1' HOUR))
GROUP BY auction, window_start, window_end;
INSERT INTO out
SELECT auction, window_start, window_end, COUNT(*)
FROM TABLE(SESSION(TABLE bids PARTITION BY auction, DESCRIPTOR(ts), INTERVAL '30' SECOND))
GROUP BY auction, window_start, window_end;
INSERT INTO out
SELECT auction, window_start, window_end, AVG(price)
FROM TABLE(
    HOP(
        DATA => TABLE bids,
        TIMECOL => DESCRIPTOR(ts),
        SLIDE => INTERVAL '5' SECOND,
        SIZE => INTERVAL '1' MINUTE))
GROUP BY auction, window_start, window_end;
INSERT INTO out
SELECT auction, window_start, window_end, COUNT(*)
FROM TABLE(TUMBLE((SELECT * FROM bids WHERE price > 10), DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
