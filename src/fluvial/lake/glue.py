"""The lake's catalog on the AWS Glue Data Catalog (``[lake] catalog_uri = "glue"``).

pyiceberg's :class:`~pyiceberg.catalog.glue.GlueCatalog` keeps each Iceberg table as a
Glue table whose ``metadata_location`` parameter points at its current metadata file, so
Athena, EMR and Redshift Spectrum read the same tables Fluvial writes. Each zone is a
Glue database named ``<resource_prefix>_<zone>`` (``[aws] resource_prefix``: several
deployments can share an account's catalog), while Fluvial and its users keep calling
tables ``zone.table``: :class:`ZoneGlueCatalog` adds the prefix on the way to Glue and
removes it on the way back, so every piece of lake code that takes ``lake.catalog`` —
maintenance, the crawler, batch models — works unchanged.

A zone's Glue database created elsewhere with a location (the CloudFormation template
puts each zone in its own bucket) keeps its tables there; otherwise tables live under the
``[lake] warehouse`` (an ``s3://`` URI). Glue, S3 and DynamoDB are reached through the
``[aws]`` endpoint and region (``[lake] s3_endpoint`` and ``s3_region`` still override
S3's), with the credentials of the environment or ``[aws] profile``.

Commits use Glue's optimistic concurrency (``UpdateTable`` with the version read), so two
writers of a table never lose each other's snapshot. All of this works as it is against
moto's Glue server, which the tests use.
"""

from __future__ import annotations

from typing import Any

from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.table import StagedTable, Table
from pyiceberg.typedef import Identifier

__all__ = ["ZoneGlueCatalog"]


class ZoneGlueCatalog(GlueCatalog):
    """A Glue catalog whose namespaces are zones, stored as ``<prefix>_<zone>`` databases.

    >>> ZoneGlueCatalog.database_of("fluvial", ("raw",))
    'fluvial_raw'
    """

    def __init__(self, name: str, *, prefix: str, **properties: Any) -> None:
        super().__init__(name, **properties)
        self.prefix = prefix

    @staticmethod
    def database_of(prefix: str, namespace: Identifier) -> str:
        """The Glue database of a zone namespace."""
        (zone,) = namespace
        return f"{prefix}_{zone}" if prefix else zone

    def _zone(self, database: str) -> str | None:
        """The zone a Glue database holds (None: not one of this lake's)."""
        if not self.prefix:
            return database
        head, _, zone = database.partition(f"{self.prefix}_")
        return zone if not head and zone else None

    # pyiceberg turns every identifier into a Glue database name through these two
    def identifier_to_database(  # type: ignore[override]
        self,
        identifier: str | Identifier,
        err: type[ValueError] | type[NoSuchNamespaceError] = ValueError,
    ) -> str:
        return self.database_of(self.prefix, (GlueCatalog.identifier_to_database(identifier, err),))

    def identifier_to_database_and_table(  # type: ignore[override]
        self,
        identifier: str | Identifier,
        err: type[ValueError] | type[NoSuchTableError] | type[NoSuchNamespaceError] = ValueError,
    ) -> tuple[str, str]:
        zone, table = GlueCatalog.identifier_to_database_and_table(identifier, err)
        return self.database_of(self.prefix, (zone,)), table

    # ... and back: tables and namespaces are named by zone
    def _convert_glue_to_iceberg(self, glue_table: Any) -> Table:
        database = glue_table.get("DatabaseName", "")
        zone = self._zone(database) or database
        return super()._convert_glue_to_iceberg({**glue_table, "DatabaseName": zone})

    def _create_staged_table(self, identifier: str | Identifier, *args: Any, **kwargs: Any) -> Any:
        # pyiceberg names a table being created by its Glue database: keep the zone's name
        staged = super()._create_staged_table(identifier, *args, **kwargs)
        return StagedTable(
            identifier=self.identifier_to_tuple(identifier),
            metadata=staged.metadata,
            metadata_location=staged.metadata_location,
            io=staged.io,
            catalog=self,
        )

    def _get_default_warehouse_location(self, database_name: str, table_name: str) -> str:
        """The zone database's location, else ``<warehouse>/<prefix>_<zone>.db/<table>``
        (pyiceberg's would look the prefixed database up under the prefix once more)."""
        zone = self._zone(database_name) or database_name
        location = self.load_namespace_properties(zone).get("location")
        if location:
            return f"{location.rstrip('/')}/{table_name}"
        return f"{self.properties['warehouse'].rstrip('/')}/{database_name}.db/{table_name}"

    def list_tables(self, namespace: str | Identifier) -> list[Identifier]:
        return [(self._zone(db) or db, *rest) for db, *rest in super().list_tables(namespace)]

    def list_namespaces(self, namespace: str | Identifier = ()) -> list[Identifier]:
        zones = (self._zone(db) for (db, *_) in super().list_namespaces(namespace))
        return [(zone,) for zone in zones if zone]
