"""Alert rules: what is watched, when it is wrong, and who is told.

A rule watches one *value*, read each evaluation:

- a **metric** of the stream pipelines (``metric = "lag_seconds"``, optionally one
  ``pipeline``), combined over the pipelines it matches with ``agg`` (default ``max``);
- a **store** table's column (``table``, ``column``), as ``agg`` of its rows (default
  ``last``: the value in the row with the largest key), optionally over the ``rows``
  newest rows only;
- the **freshness** of a batch model (``freshness = "curated.fact_orders"``): seconds
  since its last successful build (none yet: the condition holds).

Every model with a ``freshness`` SLA is watched without writing a rule: the catalog adds
``freshness.<model>.warn`` (severity warning, ``> warn_after``) and
``freshness.<model>.error`` (critical, ``> error_after``), whose channels, ``for`` and
``cooldown`` come from the rules file's ``[freshness]`` table (``enabled = false`` turns
them off; a rule of the same name in the file or the API replaces one).

and holds a *condition* of one of four kinds:

- ``threshold``: ``value <op> threshold``;
- ``change``: the rate of change over ``window`` (per second, or ``percent``) ``<op>
  threshold``;
- ``anomaly``: the value is more than ``threshold`` standard deviations (a z-score) away
  from the mean of its last ``baseline`` values;
- ``absence``: no value, or a value that has not changed for ``window``.

A condition must hold for ``for`` before the rule fires; after a notification, none
other is sent for ``cooldown``. Durations are seconds or Flink durations (``"2 min"``).

Rules live in the project's rules file (``[alerts] rules_file``, ``alerts.toml``) as
``[[rule]]`` tables, or are created through the HTTP API.

>>> rule = AlertRule.model_validate(
...     {"name": "lagging", "kind": "threshold", "metric": "lag_seconds", "op": ">",
...      "threshold": 120, "for": "2 min"})
>>> rule.source, rule.for_seconds, rule.aggregate
('metric', 120.0, 'max')
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from fluvial.errors import ConfigError, SqlError, UsageError

__all__ = [
    "AGGREGATES",
    "METRICS",
    "OPERATORS",
    "AlertRule",
    "Channel",
    "FreshnessDefaults",
    "compare",
    "freshness_rules",
    "load_freshness_defaults",
    "load_rules_file",
    "parse_rules",
    "validate_rule",
]

#: pipeline metrics a rule may watch (see :mod:`fluvial.serve.alerts.sources`)
METRICS: dict[str, str] = {
    "lag_seconds": "wall clock minus the pipeline's watermark (how far results trail)",
    "watermark_age_seconds": "seconds since the watermark last moved",
    "late_rows": "rows dropped as late so far",
    "events_per_second": "rows read per second since the previous evaluation",
    "rows_in": "rows read so far",
    "rows_out": "rows written so far",
    "checkpoint_age_seconds": "seconds since the last checkpoint",
    "state_bytes": "operator state size at the last checkpoint",
    "status_age_seconds": "seconds since the job last wrote its status",
    "running": "1 while the job runs, 0 when it finished, stopped, failed or died",
}
AGGREGATES = ("last", "sum", "avg", "min", "max", "count")
OPERATORS = (">", ">=", "<", "<=", "==", "!=")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def _seconds(value: Any) -> Any:
    """Seconds from a number or a Flink duration string (``"90 s"``, ``"2 min"``)."""
    if isinstance(value, str):
        from fluvial.stream.plan.build import parse_duration_ms

        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            return parse_duration_ms(text) / 1000
        except SqlError as exc:
            raise ValueError(
                f"expected seconds or a duration such as '2 min': {exc.detail}"
            ) from None
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]


class Channel(BaseModel):
    """Where a rule's notifications go.

    ``webhook``: a JSON POST to ``url`` (with ``headers``); ``log``: one structured line
    on the ``fluvial.alerts`` logger; ``email``: a message to ``to`` through the SMTP
    server ``[alerts]`` configures.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["webhook", "log", "email"]
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> Channel:
        if self.type == "webhook" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError(f"a webhook channel needs an http(s) url; found {self.url!r}")
        if self.type == "email" and not self.to:
            raise ValueError("an email channel needs 'to' (a list of addresses)")
        return self


class AlertRule(BaseModel):
    """One alert rule (see the module's docstring for what each field means)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    kind: Literal["threshold", "change", "anomaly", "absence"]
    description: str = ""
    severity: Literal["info", "warning", "critical"] = "warning"
    # the value
    metric: str | None = None
    pipeline: str | None = None
    table: str | None = None
    column: str | None = None
    agg: Literal["last", "sum", "avg", "min", "max", "count"] | None = None
    rows: int | None = Field(default=None, gt=0)
    freshness: str | None = None
    # the condition
    op: Literal[">", ">=", "<", "<=", "==", "!="] = ">"
    threshold: float | None = None
    window_seconds: Seconds | None = Field(default=None, alias="window")
    change: Literal["rate", "percent"] = "rate"
    baseline: int = Field(default=30, ge=3)
    min_samples: int = Field(default=5, ge=2)
    direction: Literal["both", "above", "below"] = "both"
    # timing and delivery
    for_seconds: Seconds = Field(default=0.0, alias="for")
    cooldown_seconds: Seconds = Field(default=0.0, alias="cooldown")
    channels: list[Channel] = Field(default_factory=lambda: [Channel(type="log")])

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        if not _NAME.fullmatch(self.name):
            raise ValueError(
                f"rule name {self.name!r}: expected letters, digits, '_', '.', '-' "
                "(starting with a letter or digit)"
            )
        watched = [x for x in (self.metric, self.table, self.freshness) if x is not None]
        if len(watched) != 1:
            raise ValueError(
                "a rule watches one of a 'metric', a store 'table' or a model's 'freshness'"
            )
        if self.freshness is not None:
            if self.kind != "threshold":
                raise ValueError("a freshness rule is a threshold on the age in seconds")
            if self.column is not None or self.rows is not None or self.pipeline is not None:
                raise ValueError("'column', 'rows' and 'pipeline' do not apply to freshness")
        if self.metric is not None:
            if self.metric not in METRICS:
                from fluvial.errors import did_you_mean

                raise ValueError(
                    f"unknown metric {self.metric!r}{did_you_mean(self.metric, METRICS)}; "
                    f"expected one of {', '.join(METRICS)}"
                )
            if self.column is not None or self.rows is not None:
                raise ValueError("'column' and 'rows' belong to store rules, not metric rules")
        if self.table is not None and self.column is None and self.aggregate != "count":
            raise ValueError("a store rule needs a 'column' (or agg = 'count')")
        if self.kind in ("threshold", "change") and self.threshold is None:
            raise ValueError(f"a {self.kind} rule needs a 'threshold'")
        if self.kind in ("change", "absence") and not self.window_seconds:
            raise ValueError(f"a {self.kind} rule needs a 'window' (seconds or '5 min')")
        if self.kind == "anomaly" and self.threshold is not None and self.threshold <= 0:
            raise ValueError("an anomaly rule's threshold is a z-score: expected > 0")
        if self.min_samples > self.baseline:
            raise ValueError("min_samples must not exceed baseline")
        return self

    @property
    def source(self) -> Literal["metric", "store", "freshness"]:
        """What the rule reads: pipeline ``metric``\\ s, a ``store`` table or a model's
        ``freshness``."""
        if self.metric is not None:
            return "metric"
        return "freshness" if self.freshness is not None else "store"

    @property
    def aggregate(self) -> str:
        """``agg``, or its default: ``max`` over pipelines, ``last`` of a store column."""
        if self.agg is not None:
            return self.agg
        return "max" if self.metric is not None else "last"

    @property
    def z_threshold(self) -> float:
        """An anomaly rule's z-score threshold (default 3)."""
        return 3.0 if self.threshold is None else self.threshold

    def describe(self) -> str:
        """A one-line summary: ``lag_seconds of job/p (max) > 120 for 120s``."""
        if self.metric is not None:
            what = f"{self.metric} of {self.pipeline or 'every pipeline'} ({self.aggregate})"
        elif self.freshness is not None:
            what = f"seconds since {self.freshness} was last built"
        else:
            of = f"{self.column} of " if self.column else ""
            what = f"{self.aggregate} {of}store table {self.table}"
            if self.rows:
                what += f" (newest {self.rows} rows)"
        if self.kind == "threshold":
            cond = f"{what} {self.op} {_num(self.threshold)}"
        elif self.kind == "change":
            unit = "%" if self.change == "percent" else "/s"
            cond = f"change of {what} over {_num(self.window_seconds)}s {self.op} "
            cond += f"{_num(self.threshold)}{unit}"
        elif self.kind == "anomaly":
            cond = f"{what} deviates by |z| >= {_num(self.z_threshold)} ({self.direction}) "
            cond += f"from its last {self.baseline} values"
        else:
            cond = f"no new value of {what} for {_num(self.window_seconds)}s"
        if self.for_seconds:
            cond += f" for {_num(self.for_seconds)}s"
        return cond

    def to_doc(self) -> dict[str, Any]:
        """The rule as JSON-ready data, with the file's field names (``for``, ``window``)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def compare(value: float, op: str, threshold: float) -> bool:
    """``value <op> threshold``.

    >>> compare(3, ">=", 3), compare(2, "!=", 2)
    (True, False)
    """
    if math.isnan(value):
        return False
    return {
        ">": value > threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        "<=": value <= threshold,
        "==": value == threshold,
        "!=": value != threshold,
    }[op]


def _errors(exc: pydantic.ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def parse_rules(docs: list[Any], origin: str) -> list[AlertRule]:
    """Rules from plain data (a rules file's ``rule`` list, an API body).

    Raises:
        ConfigError: a rule is invalid or two share a name (says which and why).
    """
    rules: list[AlertRule] = []
    seen: set[str] = set()
    for i, doc in enumerate(docs):
        name = doc.get("name", f"#{i + 1}") if isinstance(doc, dict) else f"#{i + 1}"
        try:
            rule = AlertRule.model_validate(doc)
        except pydantic.ValidationError as exc:
            raise ConfigError(f"{origin}: rule '{name}': {_errors(exc)}") from None
        if rule.name in seen:
            raise ConfigError(f"{origin}: two rules are named '{rule.name}'")
        seen.add(rule.name)
        rules.append(rule)
    return rules


def validate_rule(doc: Any) -> AlertRule:
    """One rule from plain data (an API body).

    Raises:
        UsageError: the rule is invalid (says which field and why).
    """
    try:
        return AlertRule.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise UsageError(f"invalid alert rule: {_errors(exc)}") from None


def load_rules_file(path: Path) -> list[AlertRule]:
    """The ``[[rule]]`` tables of a rules file (none if the file does not exist).

    Raises:
        ConfigError: the file is not valid TOML, or a rule is invalid.
    """
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown = sorted(set(data) - {"rule", "freshness"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; expected [[rule]] tables "
            "and a [freshness] table"
        )
    docs = data.get("rule", [])
    if not isinstance(docs, list):
        raise ConfigError(f"{path}: 'rule' must be [[rule]] tables")
    return parse_rules(docs, str(path))


class FreshnessDefaults(BaseModel):
    """The rules file's ``[freshness]`` table: how SLA rules are delivered."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    enabled: bool = True
    for_seconds: Seconds = Field(default=0.0, alias="for")
    cooldown_seconds: Seconds = Field(default=0.0, alias="cooldown")
    channels: list[Channel] = Field(default_factory=lambda: [Channel(type="log")])


def load_freshness_defaults(path: Path) -> FreshnessDefaults:
    """The ``[freshness]`` table of a rules file (defaults when absent).

    Raises:
        ConfigError: the file is not valid TOML or the table is invalid.
    """
    if not path.exists():
        return FreshnessDefaults()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return FreshnessDefaults.model_validate(data.get("freshness", {}))
    except pydantic.ValidationError as exc:
        raise ConfigError(f"{path}: [freshness]: {_errors(exc)}") from None


def freshness_rules(
    slas: list[tuple[str, float | None, float | None]], defaults: FreshnessDefaults
) -> list[AlertRule]:
    """The rules watching each (model, warn_after, error_after) SLA.

    >>> rules = freshness_rules([("curated.x", 3600, None)], FreshnessDefaults())
    >>> [(r.name, r.severity, r.threshold) for r in rules]
    [('freshness.curated.x.warn', 'warning', 3600.0)]
    """
    if not defaults.enabled:
        return []
    out = []
    for model, warn, error in slas:
        for level, after, severity in (("warn", warn, "warning"), ("error", error, "critical")):
            if after is None:
                continue
            out.append(
                AlertRule.model_validate(
                    {
                        "name": f"freshness.{model}.{level}",
                        "kind": "threshold",
                        "description": (
                            f"{model} breaks its freshness SLA ({level}_after {_num(after)}s)"
                        ),
                        "severity": severity,
                        "freshness": model,
                        "op": ">",
                        "threshold": after,
                        "for": defaults.for_seconds,
                        "cooldown": defaults.cooldown_seconds,
                        "channels": defaults.channels,
                    }
                )
            )
    return out
