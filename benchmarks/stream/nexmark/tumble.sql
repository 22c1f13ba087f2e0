-- A TUMBLE aggregate (q7's inner step): the highest price and the number of bids per
-- 10 s window.
CREATE TABLE nexmark_tumble (
  window_start TIMESTAMP(3), window_end TIMESTAMP(3), maxprice BIGINT, bids BIGINT
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_tumble
SELECT window_start, window_end, MAX(price) AS maxprice, COUNT(*) AS bids
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
