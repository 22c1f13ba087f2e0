"""The stream engine: Flink SQL pipelines over Arrow micro-batches (our Managed Flink).

``sql/`` parses the Flink dialect into :mod:`fluvial.stream.sql.ast`; ``plan/`` turns a
script into operators; ``ops/`` holds the vectorized operators (window assignment, window
aggregation, watermarks); ``connectors/`` the sources and sinks; ``runtime`` runs a job.
"""
