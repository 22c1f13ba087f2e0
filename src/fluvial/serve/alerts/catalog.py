"""Every alert rule of a project: those of the rules file and those created through the API.

The rules file (``[alerts] rules_file``) is the project's, under version control, so the
API does not rewrite it: rules created through the API are kept in the alert database,
and the API refuses to change or delete a file's rule (edit the file instead). Names are
unique across both.

Every batch model with a ``freshness`` SLA adds its rules too (origin ``sla``, see
:func:`fluvial.serve.alerts.rules.freshness_rules`); a file or API rule of the same name
takes its place, and the SLA itself is changed in the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fluvial.errors import ConfigError, NotFoundError, UsageError, did_you_mean
from fluvial.serve.alerts.rules import (
    AlertRule,
    freshness_rules,
    load_freshness_defaults,
    load_rules_file,
    parse_rules,
    validate_rule,
)

if TYPE_CHECKING:
    from fluvial.project import Project
    from fluvial.serve.alerts.store import AlertStore

__all__ = ["RuleCatalog", "RuleEntry"]


@dataclass(frozen=True)
class RuleEntry:
    """A rule and where it is defined: ``file`` (the rules file), ``api``, or ``sla`` (a
    model's freshness SLA)."""

    rule: AlertRule
    origin: Literal["file", "api", "sla"]


class RuleCatalog:
    """The project's rules, read afresh on every call (the file may have changed)."""

    def __init__(self, project: Project, store: AlertStore) -> None:
        self.project = project
        self.store = store

    @property
    def rules_file(self) -> Path:
        return self.project.root / self.project.settings.alerts.rules_file

    def entries(self) -> list[RuleEntry]:
        """Every rule, by name.

        Raises:
            ConfigError: the rules file is invalid, or names a rule the API created too.
        """
        from_file = load_rules_file(self.rules_file)
        docs = self.store.rule_docs()
        from_api = parse_rules(list(docs.values()), f"{self.store.path} (rules from the API)")
        clash = sorted({r.name for r in from_file} & {r.name for r in from_api})
        if clash:
            raise ConfigError(
                f"{self.rules_file}: rule(s) {', '.join(clash)} also exist in the alert "
                "database (created through the API); rename one of them"
            )
        entries = [RuleEntry(r, "file") for r in from_file]
        entries += [RuleEntry(r, "api") for r in from_api]
        named = {e.rule.name for e in entries}
        entries += [RuleEntry(r, "sla") for r in self.sla_rules() if r.name not in named]
        return sorted(entries, key=lambda e: e.rule.name)

    def sla_rules(self) -> list[AlertRule]:
        """The rules of the batch models' freshness SLAs (none without a models folder)."""
        from fluvial.batch.models import discover

        folder = self.project.root / self.project.settings.batch.models_dir
        if not folder.is_dir():
            return []
        slas = [
            (m.name, m.config.freshness.warn_after, m.config.freshness.error_after)
            for m in discover(folder)
            if m.config.freshness is not None
        ]
        if not slas:
            return []
        return freshness_rules(slas, load_freshness_defaults(self.rules_file))

    def get(self, name: str) -> RuleEntry:
        """One rule. Raises NotFoundError (with "did you mean …?")."""
        entries = self.entries()
        for entry in entries:
            if entry.rule.name == name:
                return entry
        names = [e.rule.name for e in entries]
        raise NotFoundError(f"alert rule '{name}' does not exist{did_you_mean(name, names)}")

    def create(self, doc: Any) -> AlertRule:
        """Add a rule through the API. Raises UsageError if invalid or the name is taken."""
        rule = validate_rule(doc)
        if any(e.rule.name == rule.name for e in self.entries()):
            raise UsageError(f"alert rule '{rule.name}' already exists; update it instead")
        self.store.put_rule(rule.name, rule.to_doc())
        return rule

    def update(self, name: str, doc: Any) -> AlertRule:
        """Replace an API rule (the body's name, if any, must match)."""
        entry = self.get(name)
        self._writable(entry)
        if isinstance(doc, dict):
            doc = {**doc, "name": doc.get("name", name)}
        rule = validate_rule(doc)
        if rule.name != name:
            raise UsageError(f"the body names rule '{rule.name}', the path '{name}'")
        self.store.put_rule(name, rule.to_doc())
        return rule

    def delete(self, name: str) -> None:
        """Remove an API rule (its history stays)."""
        self._writable(self.get(name))
        self.store.delete_rule(name)

    def _writable(self, entry: RuleEntry) -> None:
        if entry.origin == "sla":
            raise UsageError(
                f"alert rule '{entry.rule.name}' comes from model {entry.rule.freshness}'s "
                "freshness SLA; change the SLA in the model, or define a rule of that name"
            )
        if entry.origin == "file":
            raise UsageError(
                f"alert rule '{entry.rule.name}' is defined in {self.rules_file}; edit the file"
            )
