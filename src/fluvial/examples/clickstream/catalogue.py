"""The shop's product catalogue feed: the source of ``curated.dim_products``.

The clickstream generator's shop (:func:`fluvial.generate.catalog.shop_catalog`, the same
products and prices in every run) publishes its catalogue as *exports*: every product
with its name, category and current price, stamped with ``exported_at``. Each export is
appended to the raw-zone table ``raw.product_catalog`` (the raw zone keeps every export,
like any master dataset), and the snapshot model ``curated.dim_products`` turns the latest
export into type 2 history: a product whose price changed gets a new version.

*price_changes* simulates the merchandising team: product id → new price.

>>> table = product_catalogue(price_changes={"P10000": "9.99"})
>>> table.num_rows, table.schema.names
(720, ['product_id', 'name', 'category', 'price', 'currency', 'exported_at'])
>>> row = table.slice(0, 1).to_pylist()[0]
>>> row["product_id"], str(row["price"]), row["currency"]
('P10000', '9.99', 'USD')
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pyarrow as pa

from fluvial.errors import NotFoundError, UsageError, did_you_mean

if TYPE_CHECKING:
    from fluvial.project import Project

__all__ = ["CATALOGUE_SCHEMA", "CATALOGUE_TABLE", "load_catalogue", "product_catalogue"]

#: the lake table the exports are appended to
CATALOGUE_TABLE = "raw.product_catalog"

CATALOGUE_SCHEMA = pa.schema(
    [
        pa.field("product_id", pa.string()),
        pa.field("name", pa.string()),
        pa.field("category", pa.string()),
        pa.field("price", pa.decimal128(12, 2)),
        pa.field("currency", pa.string()),
        pa.field("exported_at", pa.timestamp("us", tz="UTC")),
    ]
)

_TITLE_SUFFIX = " | Shop"


def _price(value: Decimal | float | str) -> Decimal:
    price = Decimal(str(value)).quantize(Decimal("0.01"))
    if price < 0:
        raise UsageError(f"a price must be 0 or more, found {value}")
    return price


def product_catalogue(
    price_changes: Mapping[str, Decimal | float | str] | None = None,
    *,
    exported_at: datetime | None = None,
    site: str = "https://shop.example.com",
) -> pa.Table:
    """One export of the shop's catalogue, with *price_changes* applied.

    Raises:
        NotFoundError: a product id in *price_changes* is not in the catalogue.
        UsageError: a negative price.
    """
    from fluvial.generate import catalog as cat

    shop = cat.shop_catalog(site)
    first_product = shop.product_page(0)
    titles = shop.page_title_json.slice(first_product, len(shop.products)).to_pylist()
    names = [str(orjson.loads(t)).removesuffix(_TITLE_SUFFIX) for t in titles]
    cents = shop.product_price_cents.astype(np.int64)
    prices = [Decimal(int(c)).scaleb(-2) for c in cents]
    index = {pid: i for i, pid in enumerate(shop.products)}
    for product_id, value in (price_changes or {}).items():
        if product_id not in index:
            raise NotFoundError(
                f"product '{product_id}' is not in the catalogue"
                f"{did_you_mean(product_id, list(index))}"
            )
        prices[index[product_id]] = _price(value)
    moment = exported_at or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    n = len(shop.products)
    return pa.table(
        {
            "product_id": pa.array(shop.products, pa.string()),
            "name": pa.array(names, pa.string()),
            "category": pa.array(shop.categories, pa.string()).take(
                pa.array(shop.product_category)
            ),
            "price": pa.array(prices, pa.decimal128(12, 2)),
            "currency": pa.array([cat.CURRENCY] * n, pa.string()),
            "exported_at": pa.array([moment] * n, pa.timestamp("us", tz="UTC")),
        },
        schema=CATALOGUE_SCHEMA,
    )


def load_catalogue(
    project: Project,
    price_changes: Mapping[str, Decimal | float | str] | None = None,
    *,
    exported_at: datetime | None = None,
) -> int:
    """Append one catalogue export to ``raw.product_catalog`` (created on first use).

    Returns the number of products written.
    """
    from fluvial.lake import append, open_lake

    data = product_catalogue(price_changes, exported_at=exported_at)
    with open_lake(project) as lake:
        if lake.exists(CATALOGUE_TABLE):
            table = lake.table(CATALOGUE_TABLE)
        else:
            table = lake.create_table(CATALOGUE_TABLE, CATALOGUE_SCHEMA, time_column="exported_at")
        append(table, data, properties={"fluvial.source": "product-catalogue-export"})
    return data.num_rows
