-- Nexmark q14, calculation: bids in a price band converted to euros, with the part of
-- the day they were made in. Nexmark's q14 also counts the 'c's in `extra` with a Java
-- UDF (count_char); that column is left out here.
CREATE TABLE nexmark_q14 (
  auction BIGINT, bidder BIGINT, price DECIMAL(23, 3), bidTimeType VARCHAR,
  dateTime TIMESTAMP(3), extra VARCHAR
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q14
SELECT auction, bidder, 0.908 * price AS price,
       CASE
         WHEN HOUR(dateTime) >= 8 AND HOUR(dateTime) <= 18 THEN 'dayTime'
         WHEN HOUR(dateTime) <= 6 OR HOUR(dateTime) >= 20 THEN 'nightTime'
         ELSE 'otherTime'
       END AS bidTimeType,
       dateTime, extra
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;
