"""The HTTP API (our QuickSight's data side): FastAPI under ``/api``, OpenAPI at
``/api/docs``.

:func:`create_api` builds the app: pipelines and live metrics (also as Server-Sent
Events), the operational store, the lake catalog, lineage, quality and batch runs, the SQL
explorer (:func:`execute_sql`: one read-only statement, bounded rows and time) and alert
rules. See ``docs/api.md``.
"""

from __future__ import annotations

from fluvial.serve.api.app import PREFIX, STATUS, create_api, status_of
from fluvial.serve.api.sql import QueryResult, check_statement, execute_sql

__all__ = [
    "PREFIX",
    "STATUS",
    "QueryResult",
    "check_statement",
    "create_api",
    "execute_sql",
    "status_of",
]
