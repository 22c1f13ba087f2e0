"""The Kinesis Data Streams backend of the event log (``pip install 'fluvial[aws]'``)."""

from fluvial.log.kinesis.log import KinesisLog

__all__ = ["KinesisLog"]
