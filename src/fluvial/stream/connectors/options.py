"""Reading a table's ``WITH (…)`` options: checked names, typed values, positioned errors.

Every message names the table and is positioned at its ``CREATE TABLE`` (line, column),
like the SQL front end's own errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from fluvial.errors import SqlError, UnsupportedSqlError, did_you_mean

if TYPE_CHECKING:
    from fluvial.stream.sql.ast import CreateTable

__all__ = ["Options"]

#: options every table may carry whatever its connector (the engine reads them)
ENGINE_OPTIONS = (
    "connector",
    "scan.watermark.idle-timeout",
    # Fluvial's extensions, on source tables (dropped when a pipeline is deployed to Flink)
    "fluvial.allowed-lateness",
    "fluvial.late-events.topic",
)


class Options:
    """A table's options, with typed getters that raise :class:`SqlError` at the table."""

    def __init__(self, table: CreateTable, options: Mapping[str, str] | None = None) -> None:
        self.table = table
        self.values = dict(table.options if options is None else options)

    def error(self, message: str, *, unsupported: bool = False) -> SqlError:
        """An error about this table, positioned at its ``CREATE TABLE``."""
        pos = self.table.position
        cls = UnsupportedSqlError if unsupported else SqlError
        return cls(
            f"table '{self.table.name}': {message}",
            line=pos.line if pos else None,
            column=pos.column if pos else None,
        )

    def check(self, required: Iterable[str], optional: Iterable[str]) -> None:
        """Every required option is present and every option is known."""
        connector = self.values.get("connector", "?")
        required = tuple(required)
        known = (*ENGINE_OPTIONS, *required, *optional)
        for name in required:
            if name not in self.values:
                raise self.error(f"connector '{connector}' needs the option '{name}'")
        for name in self.values:
            if name not in known:
                raise self.error(
                    f"unknown option '{name}' for connector '{connector}'"
                    f"{did_you_mean(name, known)}; expected one of {', '.join(sorted(known))}"
                )

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)

    def require(self, name: str) -> str:
        if name not in self.values:
            raise self.error(f"the option '{name}' is required here")
        return self.values[name]

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.values.get(name, default)
        if value.lower() not in choices:
            raise self.error(
                f"option '{name}': expected one of {', '.join(choices)}, found {value!r}"
                f"{did_you_mean(value.lower(), choices)}"
            )
        return value.lower()

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        if value is None:
            return default
        if value.lower() not in ("true", "false"):
            raise self.error(f"option '{name}': expected 'true' or 'false', found {value!r}")
        return value.lower() == "true"

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.values.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise self.error(f"option '{name}': expected an integer, found {value!r}") from None

    def char(self, name: str, default: str) -> str:
        value = self.values.get(name, default)
        value = {"\\t": "\t", "\\n": "\n"}.get(value, value)
        if len(value) != 1:
            raise self.error(f"option '{name}': expected a single character, found {value!r}")
        return value
