"""Alerts (our CloudWatch alarms): rules on stream results and pipeline metrics.

A rule (:class:`AlertRule`) watches a pipeline metric or a store table's column, holds a
threshold, rate-of-change, anomaly (z-score) or absence condition, waits ``for`` before it
fires and keeps a ``cooldown`` between notifications. :class:`AlertEvaluator` moves each
rule through OK, PENDING, FIRING and RESOLVED, keeps the history in
``<data_dir>/alerts/alerts.db`` and notifies webhooks, the log and email. Rules come from
the project's ``alerts.toml`` or the HTTP API. See ``docs/alerts.md``.
"""

from __future__ import annotations

from fluvial.serve.alerts.catalog import RuleCatalog, RuleEntry
from fluvial.serve.alerts.channels import CHANNELS, Notification, deliver
from fluvial.serve.alerts.evaluate import STATES, AlertEvaluator, Verdict, judge
from fluvial.serve.alerts.rules import (
    METRICS,
    AlertRule,
    Channel,
    load_rules_file,
    parse_rules,
    validate_rule,
)
from fluvial.serve.alerts.sources import (
    PipelineSampler,
    PipelineStatus,
    metric_value,
    store_value,
)
from fluvial.serve.alerts.store import AlertStore, HistoryEntry, RuleState, open_alert_store

__all__ = [
    "CHANNELS",
    "METRICS",
    "STATES",
    "AlertEvaluator",
    "AlertRule",
    "AlertStore",
    "Channel",
    "HistoryEntry",
    "Notification",
    "PipelineSampler",
    "PipelineStatus",
    "RuleCatalog",
    "RuleEntry",
    "RuleState",
    "Verdict",
    "deliver",
    "judge",
    "load_rules_file",
    "metric_value",
    "open_alert_store",
    "parse_rules",
    "store_value",
    "validate_rule",
]
