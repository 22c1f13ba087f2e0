"""Consumer groups: committed offsets, one small JSON file per (group, topic).

Stored as ``<data_dir>/log/_groups/<group>/<topic>.json``, replaced atomically (temp file,
fsync, rename, fsync of the folder), so a crash leaves the old or the new offsets, never a
torn file. Any process may commit: groups do not take the topic's writer lock.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from fluvial.errors import CorruptLogError, LogError
from fluvial.log.embedded.topic import write_atomic
from fluvial.log.routing import check_name

__all__ = ["GroupStore"]

GROUPS_DIR = "_groups"


class GroupStore:
    """Committed offsets of consumer groups."""

    def __init__(self, root: Path, *, durable: bool) -> None:
        self.root = root / GROUPS_DIR
        self.durable = durable
        self._lock = threading.Lock()  # commit reads, merges and writes: one at a time

    def _path(self, group: str, topic: str) -> Path:
        return self.root / check_name(group, "group") / f"{check_name(topic)}.json"

    def commit(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Merge *offsets* into the group's committed offsets on *topic*."""
        clean: dict[int, int] = {}
        for partition, offset in offsets.items():
            if not isinstance(offset, int) or offset < 0:
                raise LogError(
                    f"committed offsets must be integers >= 0, found {offset!r} "
                    f"for partition {partition}"
                )
            clean[int(partition)] = int(offset)
        path = self._path(group, topic)
        with self._lock:
            merged = {**self.committed(group, topic), **clean}
            path.parent.mkdir(parents=True, exist_ok=True)
            stored = {str(p): o for p, o in sorted(merged.items())}
            doc = {"group": group, "topic": topic, "offsets": stored}
            write_atomic(path, json.dumps(doc).encode(), durable=self.durable)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        path = self._path(group, topic)
        try:
            doc = json.loads(path.read_bytes())
            return {int(p): int(o) for p, o in doc["offsets"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptLogError(f"{path} is not a valid offsets file: {exc}") from exc

    def entries(self) -> Iterator[tuple[str, str]]:
        """Every (group, topic) with committed offsets, sorted."""
        if not self.root.is_dir():
            return
        for group_dir in sorted(self.root.iterdir()):
            if group_dir.is_dir() and not group_dir.name.startswith("."):
                for path in sorted(group_dir.glob("*.json")):
                    if not path.name.startswith("."):
                        yield group_dir.name, path.stem

    def forget_topic(self, topic: str) -> None:
        """Drop every group's offsets for a deleted topic."""
        for group, name in list(self.entries()):
            if name == topic:
                self._path(group, topic).unlink(missing_ok=True)
                group_dir = self.root / group
                if not any(group_dir.iterdir()):
                    shutil.rmtree(group_dir, ignore_errors=True)
