"""The lake's catalog: Iceberg tables in a SQL catalog (our Glue Data Catalog).

The catalog is pyiceberg's ``SqlCatalog``: a SQLite file in the project's data dir by
default (``<data_dir>/lake_catalog.db``), PostgreSQL when ``[lake] catalog_uri`` says so;
or the AWS Glue Data Catalog with ``catalog_uri = "glue"`` (:mod:`fluvial.lake.glue`).
Table data and metadata live in the warehouse: a folder (``<data_dir>/lake``) or an
``s3://`` URI. Several lakes can share one catalog database under different
``catalog_name`` values.

>>> import tempfile
>>> from fluvial.project import Project
>>> lake = open_lake(Project.init(tempfile.mkdtemp() + "/p"))
>>> lake.tables()
[]
>>> import pyarrow as pa
>>> schema = pa.schema([("id", pa.int64()), ("at", pa.timestamp("us", tz="UTC"))])
>>> table = lake.create_table("refined.things", schema, time_column="at")
>>> lake.tables(), str(table.spec().fields[0].transform)
(['refined.things'], 'day')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fluvial.errors import ConfigError, MissingDependencyError, NotFoundError, did_you_mean
from fluvial.lake.zones import Zone, split_name, zone_of, zones

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

    from fluvial.config import LakeSettings
    from fluvial.project import Project

__all__ = ["CATALOG_FILE", "Lake", "open_lake"]

#: the embedded catalog's SQLite file, in the project's data dir
CATALOG_FILE = "lake_catalog.db"


@dataclass
class Lake:
    """A project's lake: the Iceberg catalog, its warehouse and its zones.

    ``catalog`` is the pyiceberg :class:`~pyiceberg.catalog.Catalog`; use it directly for
    anything this small class does not wrap (maintenance, inspection).
    """

    catalog: Catalog
    warehouse: str
    zones: dict[str, Zone] = field(default_factory=dict)
    #: FileIO properties (S3 endpoint, region) that readers such as DuckDB need too
    io_properties: dict[str, str] = field(default_factory=dict)

    def ensure_namespaces(self) -> None:
        """Create every zone's namespace that does not exist yet."""
        for name, zone in self.zones.items():
            self.catalog.create_namespace_if_not_exists(name, {"comment": zone.description})

    def tables(self) -> list[str]:
        """Every table in the zones, as sorted ``zone.table`` names."""
        from pyiceberg.exceptions import NoSuchNamespaceError

        names: list[str] = []
        for zone in self.zones:
            try:
                identifiers = self.catalog.list_tables(zone)
            except NoSuchNamespaceError:
                continue
            names += [".".join(ident) for ident in identifiers]
        return sorted(names)

    def exists(self, name: str) -> bool:
        """Whether ``zone.table`` exists."""
        return self.catalog.table_exists(split_name(name))

    def table(self, name: str) -> Table:
        """Load ``zone.table``. Raises NotFoundError (with a suggestion)."""
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        ident = split_name(name)
        try:
            return self.catalog.load_table(ident)
        except (NoSuchTableError, NoSuchNamespaceError):
            raise NotFoundError(
                f"table '{name}' does not exist{did_you_mean(name, self.tables())}"
            ) from None

    def create_table(
        self,
        name: str,
        schema: pa.Schema,
        *,
        time_column: str | None = None,
        properties: dict[str, str] | None = None,
    ) -> Table:
        """Create ``zone.table`` from an Arrow schema, following its zone's rules.

        With *time_column* the table is partitioned by the zone's time transform of that
        column (``hour`` or ``day``) and declares it as its sort order. Every column is
        created optional: the lake keeps what it is given, validation happens upstream.

        Raises:
            NotFoundError: the zone or the time column does not exist.
            FluvialError: the table exists (a UsageError).
        """
        from pyiceberg.exceptions import CommitFailedException, TableAlreadyExistsError
        from pyiceberg.transforms import DayTransform, HourTransform, IdentityTransform

        from fluvial.errors import UsageError
        from fluvial.lake.write import iceberg_arrow_schema

        zone = zone_of(name, self.zones)
        if time_column is not None and time_column not in schema.names:
            raise NotFoundError(
                f"time column '{time_column}' is not in the schema of '{name}'"
                f"{did_you_mean(time_column, schema.names)}"
            )
        if self.exists(name):
            raise UsageError(f"table '{name}' already exists")
        arrow_schema = iceberg_arrow_schema(schema, nullable=True)
        props = {**zone.table_properties(), **(properties or {})}
        self.catalog.create_namespace_if_not_exists(zone.name)
        try:
            with self.catalog.create_table_transaction(
                split_name(name), schema=arrow_schema, properties=props
            ) as tx:
                if time_column is not None:
                    transform: HourTransform | DayTransform = (
                        HourTransform() if zone.granularity == "hour" else DayTransform()
                    )
                    with tx.update_spec() as spec:
                        spec.add_field(time_column, transform, f"{time_column}_{zone.granularity}")
                    with tx.update_sort_order() as order:
                        order.asc(time_column, IdentityTransform())
        except (TableAlreadyExistsError, CommitFailedException):  # created meanwhile
            if not self.exists(name):
                raise
            raise UsageError(f"table '{name}' already exists") from None
        return self.table(name)

    def drop_table(self, name: str) -> None:
        """Remove ``zone.table`` from the catalog (its files stay, for maintenance)."""
        from pyiceberg.exceptions import NoSuchTableError

        try:
            self.catalog.drop_table(split_name(name))
        except NoSuchTableError:
            raise NotFoundError(f"table '{name}' does not exist") from None

    def close(self) -> None:
        """Release the catalog's database connections (or its Glue client)."""
        engine: Any = getattr(self.catalog, "engine", None)
        if engine is not None:
            engine.dispose()
        glue: Any = getattr(self.catalog, "glue", None)
        if glue is not None:
            glue.close()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: ``[lake] catalog_uri`` naming the AWS Glue Data Catalog
GLUE = "glue"


def _catalog_uri(settings: LakeSettings, data_dir: Path) -> str:
    uri = settings.catalog_uri.strip()
    if not uri:
        return f"sqlite:///{data_dir / CATALOG_FILE}"
    if uri.lower() in (GLUE, "glue://"):
        return GLUE
    scheme = uri.partition("://")[0]
    if scheme in ("postgresql", "postgres"):
        # SQLAlchemy's plain postgresql:// means psycopg2; Fluvial's postgres extra is psycopg 3
        return "postgresql+psycopg://" + uri.partition("://")[2]
    if scheme == "postgresql+psycopg" or scheme.startswith("sqlite"):
        return uri
    raise ConfigError(
        f"lake.catalog_uri: expected sqlite:///…, postgresql+psycopg://… or glue, found {uri!r}"
    )


def _warehouse(settings: LakeSettings, data_dir: Path) -> str:
    where = settings.warehouse.strip() or "lake"
    if "://" in where:
        if not where.startswith(("s3://", "s3a://", "file://")):
            raise ConfigError(f"lake.warehouse: expected a folder or an s3:// URI, found {where!r}")
        return where.rstrip("/")
    path = (data_dir / where).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def open_lake(project: Project, *, catalog_name: str | None = None) -> Lake:
    """Open the project's lake as ``[lake]`` configures it, and ensure its zones exist.

    Args:
        project: the project (its settings and data dir).
        catalog_name: overrides ``[lake] catalog_name`` (a lake within a shared catalog).

    Raises:
        ConfigError: the catalog URI or warehouse is malformed.
        MissingDependencyError: PostgreSQL is configured without ``fluvial[postgres]``, or
            Glue without ``fluvial[aws]``.
    """
    from pyiceberg.catalog.sql import SqlCatalog

    settings = project.settings.lake
    uri = _catalog_uri(settings, project.data_dir)
    if uri.startswith("postgresql"):
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError("psycopg", "postgres") from exc
    aws = project.settings.aws
    io_properties: dict[str, str] = {}
    endpoint = settings.s3_endpoint or (aws.endpoint_url if uri == GLUE else "")
    region = settings.s3_region or (aws.region if uri == GLUE else "")
    if endpoint:
        io_properties["s3.endpoint"] = endpoint
    if region:
        io_properties["s3.region"] = region
    warehouse = _warehouse(settings, project.data_dir)
    if uri == GLUE:
        lake = Lake(
            _glue_catalog(project, catalog_name, warehouse, io_properties),
            warehouse,
            zones(settings),
            io_properties,
        )
        lake.ensure_namespaces()
        return lake
    try:
        catalog = SqlCatalog(
            catalog_name or settings.catalog_name, uri=uri, warehouse=warehouse, **io_properties
        )
    except Exception as exc:  # SQLAlchemy's OperationalError and friends
        raise ConfigError(f"cannot open the lake catalog at {uri}: {exc}") from exc
    lake = Lake(catalog, warehouse, zones(settings), io_properties)
    lake.ensure_namespaces()
    return lake


def _glue_catalog(
    project: Project, catalog_name: str | None, warehouse: str, io_properties: dict[str, str]
) -> Catalog:
    """pyiceberg's Glue catalog with zones as ``<resource_prefix>_<zone>`` databases."""
    from fluvial._deps import require

    require("boto3", "aws")
    from fluvial.lake.glue import ZoneGlueCatalog

    aws = project.settings.aws
    properties = {"warehouse": warehouse, "glue.region": aws.region, **io_properties}
    if aws.endpoint_url:
        properties["glue.endpoint"] = aws.endpoint_url
    if aws.profile:
        properties["glue.profile-name"] = aws.profile
    try:
        return ZoneGlueCatalog(
            catalog_name or project.settings.lake.catalog_name,
            prefix=aws.resource_prefix,
            **properties,
        )
    except Exception as exc:  # botocore's errors (a profile that does not exist, …)
        raise ConfigError(f"cannot open the Glue Data Catalog: {exc}") from exc
