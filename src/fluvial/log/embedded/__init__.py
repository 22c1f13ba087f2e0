"""The embedded event log: Arrow frames in segment files, on one machine.

See ``docs/adr/0002-embedded-event-log.md`` for the format and the decisions behind it.
"""

from __future__ import annotations

from fluvial.log.embedded.log import EmbeddedLog

__all__ = ["EmbeddedLog"]
