"""The Kafka backend of the event log (``pip install 'fluvial[kafka]'``).

confluent-kafka is imported only when a :class:`KafkaLog` is opened, so this package
imports without the extra; opening one without it raises
:class:`~fluvial.errors.MissingDependencyError` with the install command.
"""

from __future__ import annotations

from fluvial.log.kafka.admin import AdminTopics, TopicAdmin
from fluvial.log.kafka.log import GROUPS_TOPIC, SCHEMAS_TOPIC, KafkaLog

__all__ = ["GROUPS_TOPIC", "SCHEMAS_TOPIC", "AdminTopics", "KafkaLog", "TopicAdmin"]
