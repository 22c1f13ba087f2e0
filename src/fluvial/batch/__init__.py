"""Batch models (our Glue ETL / EMR / Redshift): SQL models into the lake and the warehouse.

Models are SELECTs in ``models/<zone>/<name>.sql``; :func:`run` builds them in dependency
order as views, tables, incremental tables or SCD2 snapshots, with DuckDB (or Spark);
:func:`backfill` rebuilds day partitions; :func:`check_freshness` checks SLAs. See
``docs/batch.md``.
"""

from __future__ import annotations

from fluvial.batch.config import ModelConfig
from fluvial.batch.dag import Dag
from fluvial.batch.engines import Engine, IcebergInput, create_engine
from fluvial.batch.history import History, ModelRecord
from fluvial.batch.hooks import Hooks, LineageHooks, NoHooks, QualityHooks, QualityOutcome, RunHooks
from fluvial.batch.models import Model, discover, load_models
from fluvial.batch.runner import FreshnessStatus, RunResult, backfill, check_freshness, history, run
from fluvial.batch.warehouse import connect_warehouse

__all__ = [
    "Dag",
    "Engine",
    "FreshnessStatus",
    "History",
    "Hooks",
    "IcebergInput",
    "LineageHooks",
    "Model",
    "ModelConfig",
    "ModelRecord",
    "NoHooks",
    "QualityHooks",
    "QualityOutcome",
    "RunHooks",
    "RunResult",
    "backfill",
    "check_freshness",
    "connect_warehouse",
    "create_engine",
    "discover",
    "history",
    "load_models",
    "run",
]
