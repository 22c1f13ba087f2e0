"""The simulated shop: products, categories, pages, campaigns, referrers and user agents.

Everything here is data, drawn once from a fixed seed (so product ids and prices are the
same in every run, whatever ``--seed`` says): the clickstream simulation only picks
indices into these tables, and the JSON of each string is encoded here, once, so the
simulation can assemble events by concatenation without escaping anything per event.

>>> shop = shop_catalog()
>>> len(shop.categories), len(shop.products) == len(shop.product_price_cents)
(12, True)
>>> shop.page_path[shop.home_page], shop.page_path[shop.product_page(0)]
('/', '/p/P10000')
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from functools import cache

import numpy as np
import orjson
import pyarrow as pa

__all__ = [
    "CAMPAIGNS",
    "CLICK_ELEMENTS",
    "CURRENCY",
    "LOCALES",
    "REFERRERS",
    "USER_AGENTS",
    "Campaign",
    "ShopCatalog",
    "json_str",
    "shop_catalog",
]

CURRENCY = "USD"

#: slug, display name, median price in dollars, search terms, product nouns
_CATEGORIES: tuple[tuple[str, str, float, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "electronics",
        "Electronics",
        120.0,
        ("headphones", "usb c cable", "bluetooth speaker", "charger"),
        ("Headphones", "Speaker", "Charger", "Earbuds", "Power Bank"),
    ),
    (
        "computers",
        "Computers",
        450.0,
        ("laptop", "gaming mouse", "monitor 27 inch", "ssd 1tb"),
        ("Laptop", "Monitor", "Keyboard", "Mouse", "SSD"),
    ),
    (
        "phones",
        "Phones & Tablets",
        380.0,
        ("smartphone", "phone case", "tablet", "screen protector"),
        ("Smartphone", "Tablet", "Phone Case", "Screen Protector"),
    ),
    (
        "home-kitchen",
        "Home & Kitchen",
        45.0,
        ("coffee maker", "frying pan", "knife set", "blender"),
        ("Coffee Maker", "Frying Pan", "Knife Set", "Blender", "Kettle"),
    ),
    (
        "books",
        "Books",
        18.0,
        ("mystery novel", "cookbook", "python programming", "children books"),
        ("Novel", "Cookbook", "Guide", "Picture Book", "Biography"),
    ),
    (
        "fashion",
        "Fashion",
        55.0,
        ("running shoes", "winter jacket", "jeans", "t-shirt"),
        ("Sneakers", "Jacket", "Jeans", "T-Shirt", "Dress"),
    ),
    (
        "sports",
        "Sports & Outdoors",
        70.0,
        ("yoga mat", "tent", "dumbbells", "bike helmet"),
        ("Yoga Mat", "Tent", "Dumbbells", "Helmet", "Backpack"),
    ),
    (
        "beauty",
        "Beauty",
        25.0,
        ("face cream", "shampoo", "perfume", "lipstick"),
        ("Face Cream", "Shampoo", "Perfume", "Lipstick", "Serum"),
    ),
    (
        "toys",
        "Toys & Games",
        30.0,
        ("lego", "board game", "puzzle 1000", "plush toy"),
        ("Building Set", "Board Game", "Puzzle", "Plush Toy", "Robot Kit"),
    ),
    (
        "garden",
        "Garden",
        40.0,
        ("garden hose", "plant pot", "lawn mower", "seeds"),
        ("Hose", "Plant Pot", "Lawn Mower", "Pruner", "Planter"),
    ),
    (
        "grocery",
        "Grocery",
        12.0,
        ("coffee beans", "green tea", "olive oil", "dark chocolate"),
        ("Coffee Beans", "Green Tea", "Olive Oil", "Chocolate", "Granola"),
    ),
    (
        "pets",
        "Pet Supplies",
        28.0,
        ("dog food", "cat litter", "dog leash", "aquarium"),
        ("Dog Food", "Cat Litter", "Leash", "Cat Tree", "Aquarium"),
    ),
)
_ADJECTIVES = (
    "Classic",
    "Pro",
    "Ultra",
    "Eco",
    "Smart",
    "Compact",
    "Deluxe",
    "Essential",
    "Premium",
    "Urban",
    "Nordic",
    "Vintage",
)
_BRANDS = (
    "Acme",
    "Northwind",
    "Contoso",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Vandelay",
)
_PRODUCTS_PER_CATEGORY = 60
#: relative popularity of each category (in the order above)
_CATEGORY_WEIGHTS = (14, 9, 9, 11, 10, 12, 7, 8, 6, 4, 5, 5)


@dataclass(frozen=True)
class Campaign:
    """A marketing campaign: its UTM parameters and the referrer channel that carries it."""

    source: str
    medium: str
    name: str
    channel: str  # paid | social | email

    @property
    def query(self) -> str:
        return urllib.parse.urlencode(
            {"utm_source": self.source, "utm_medium": self.medium, "utm_campaign": self.name}
        )


CAMPAIGNS: tuple[Campaign, ...] = (
    Campaign("google", "cpc", "brand_search", "paid"),
    Campaign("google", "cpc", "black_friday", "paid"),
    Campaign("bing", "cpc", "generic_search", "paid"),
    Campaign("facebook", "paid_social", "spring_sale", "social"),
    Campaign("instagram", "paid_social", "influencer_drop", "social"),
    Campaign("tiktok", "paid_social", "summer_trends", "social"),
    Campaign("newsletter", "email", "weekly_digest", "email"),
    Campaign("newsletter", "email", "cart_reminder", "email"),
    Campaign("partner", "affiliate", "cashback_club", "paid"),
)

#: referrer channel -> (referrer URLs, weights); "direct" has no referrer
REFERRERS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "search": (
        (
            "https://www.google.com/",
            "https://www.bing.com/",
            "https://duckduckgo.com/",
            "https://search.yahoo.com/",
            "https://www.ecosia.org/",
        ),
        (0.78, 0.09, 0.06, 0.04, 0.03),
    ),
    "social": (
        (
            "https://www.facebook.com/",
            "https://t.co/",
            "https://www.instagram.com/",
            "https://www.reddit.com/",
            "https://www.pinterest.com/",
            "https://www.tiktok.com/",
        ),
        (0.32, 0.12, 0.22, 0.12, 0.1, 0.12),
    ),
    "email": (
        ("https://mail.google.com/", "https://outlook.live.com/", "https://mail.yahoo.com/"),
        (0.6, 0.3, 0.1),
    ),
    "paid": (
        ("https://www.google.com/", "https://www.bing.com/", "https://www.cashbackclub.example/"),
        (0.7, 0.2, 0.1),
    ),
}
#: the landing channel of a human session: channel -> share
CHANNEL_SHARES: dict[str, float] = {
    "direct": 0.28,
    "search": 0.32,
    "social": 0.13,
    "email": 0.09,
    "paid": 0.18,
}

#: device kind -> (user agents, weights); kind "bot" is a crawler
USER_AGENTS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "desktop": (
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
        ),
        (0.48, 0.2, 0.12, 0.15, 0.05),
    ),
    "mobile": (
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
            "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.6312.118 Mobile Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        ),
        (0.45, 0.2, 0.25, 0.1),
    ),
    "tablet": (
        (
            "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
        ),
        (0.7, 0.3),
    ),
    "bot": (
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "python-requests/2.31.0",
        ),
        (0.4, 0.2, 0.2, 0.1, 0.1),
    ),
}
#: device kinds of human devices and their shares
DEVICE_SHARES: dict[str, float] = {"desktop": 0.42, "mobile": 0.5, "tablet": 0.08}

LOCALES: tuple[tuple[str, float], ...] = (
    ("en-US", 0.42), ("en-GB", 0.12), ("de-DE", 0.1), ("fr-FR", 0.08), ("es-ES", 0.06),
    ("nl-NL", 0.04), ("it-IT", 0.04), ("pt-BR", 0.05), ("ja-JP", 0.04), ("pl-PL", 0.05),
)  # fmt: skip

#: clickable elements on a product page: name, share
CLICK_ELEMENTS: tuple[tuple[str, float], ...] = (
    ("reviews", 0.3),
    ("image_gallery", 0.3),
    ("recommendation", 0.25),
    ("size_guide", 0.1),
    ("banner", 0.05),
)

PLANS: tuple[tuple[str, float], ...] = (("free", 0.7), ("plus", 0.22), ("pro", 0.08))

FIRST_NAMES = ("emma", "liam", "olivia", "noah", "ava", "lucas", "mia", "leo", "sofia", "ben", "lea", "omar", "yuki", "ana", "ivan", "zoe")  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example")


def json_str(text: str) -> str:
    """*text* as a JSON string literal, quotes included.

    >>> json_str('say "hi"')
    '"say \\\\"hi\\\\""'
    """
    return orjson.dumps(text).decode()


@dataclass(frozen=True)
class ShopCatalog:
    """The shop's products and pages as arrays, ready for vectorized lookups.

    Pages are numbered: home, one per category, one per product, one per search query,
    then cart, three checkout steps and the order confirmation.
    """

    categories: tuple[str, ...]  # slugs
    category_weights: np.ndarray  # float, sums to 1
    products: tuple[str, ...]  # product ids
    product_category: np.ndarray  # int
    product_price_cents: np.ndarray  # int64
    category_first_product: np.ndarray  # int: products are grouped by category
    category_product_count: np.ndarray  # int
    queries: tuple[str, ...]
    query_category: np.ndarray  # int
    category_first_query: np.ndarray
    category_query_count: np.ndarray
    page_path: tuple[str, ...]  # path plus query string, e.g. "/search?q=lego"
    page_url: pa.Array  # string: site + path
    page_title_json: pa.Array  # string: JSON literal of the title
    page_view_props: pa.Array  # string: page_view properties JSON
    product_id_json: pa.Array  # string: '"P10000"'
    query_json: pa.Array  # string: JSON literal of each query
    home_page: int
    cart_page: int
    checkout_pages: tuple[int, int, int]
    confirmation_page: int

    def category_page(self, category: int | np.ndarray) -> int | np.ndarray:
        return 1 + category

    def product_page(self, product: int | np.ndarray) -> int | np.ndarray:
        return 1 + len(self.categories) + product

    def search_page(self, query: int | np.ndarray) -> int | np.ndarray:
        return 1 + len(self.categories) + len(self.products) + query


def _weights(values: tuple[float, ...] | list[float]) -> np.ndarray:
    w = np.asarray(values, dtype=np.float64)
    return w / w.sum()


@cache
def shop_catalog(site: str = "https://shop.example.com") -> ShopCatalog:
    """The catalogue (cached: it is the same for every run)."""
    rng = np.random.default_rng(20_240_501)
    slugs = tuple(c[0] for c in _CATEGORIES)
    products: list[str] = []
    names: list[str] = []
    cats: list[int] = []
    prices: list[int] = []
    first = np.zeros(len(slugs), dtype=np.int64)
    count = np.full(len(slugs), _PRODUCTS_PER_CATEGORY, dtype=np.int64)
    for c, (_slug, _name, median, _terms, nouns) in enumerate(_CATEGORIES):
        first[c] = len(products)
        # log-normal prices around the category's median, ending in .99 or .49 like shops do
        dollars = np.maximum(1, np.round(median * rng.lognormal(0.0, 0.55, _PRODUCTS_PER_CATEGORY)))
        cents = rng.choice([99, 49], size=_PRODUCTS_PER_CATEGORY, p=[0.8, 0.2])
        for i in range(_PRODUCTS_PER_CATEGORY):
            products.append(f"P{10000 + len(products)}")
            names.append(
                f"{_BRANDS[rng.integers(len(_BRANDS))]} {_ADJECTIVES[rng.integers(len(_ADJECTIVES))]}"
                f" {nouns[i % len(nouns)]}"
            )
            cats.append(c)
            prices.append(int(dollars[i] - 1) * 100 + int(cents[i]))
    queries: list[str] = []
    query_cat: list[int] = []
    qfirst = np.zeros(len(slugs), dtype=np.int64)
    qcount = np.zeros(len(slugs), dtype=np.int64)
    for c, (_slug, _name, _median, terms, _nouns) in enumerate(_CATEGORIES):
        qfirst[c], qcount[c] = len(queries), len(terms)
        queries.extend(terms)
        query_cat.extend([c] * len(terms))

    paths: list[str] = ["/"]
    titles: list[str] = ["Shop — Home"]
    props: list[str] = ['{"path":"/"}']
    for slug, name, *_ in _CATEGORIES:
        paths.append(f"/c/{slug}")
        titles.append(f"{name} | Shop")
        props.append(f'{{"path":{json_str(paths[-1])},"category":{json_str(slug)}}}')
    for pid, name, c in zip(products, names, cats, strict=True):
        paths.append(f"/p/{pid}")
        titles.append(f"{name} | Shop")
        props.append(
            f'{{"path":{json_str(paths[-1])},"category":{json_str(slugs[c])},"product_id":{json_str(pid)}}}'
        )
    for q, c in zip(queries, query_cat, strict=True):
        paths.append("/search?" + urllib.parse.urlencode({"q": q}))
        titles.append(f"Search results for “{q}” | Shop")
        props.append(f'{{"path":"/search","category":{json_str(slugs[c])}}}')
    fixed = [
        ("/cart", "Your cart | Shop"),
        ("/checkout/shipping", "Checkout: shipping | Shop"),
        ("/checkout/payment", "Checkout: payment | Shop"),
        ("/checkout/review", "Checkout: review | Shop"),
        ("/checkout/confirmation", "Thank you for your order | Shop"),
    ]
    cart_page = len(paths)
    for path, title in fixed:
        paths.append(path)
        titles.append(title)
        props.append(f'{{"path":{json_str(path)}}}')
    return ShopCatalog(
        categories=slugs,
        category_weights=_weights(list(_CATEGORY_WEIGHTS)),
        products=tuple(products),
        product_category=np.asarray(cats, dtype=np.int64),
        product_price_cents=np.asarray(prices, dtype=np.int64),
        category_first_product=first,
        category_product_count=count,
        queries=tuple(queries),
        query_category=np.asarray(query_cat, dtype=np.int64),
        category_first_query=qfirst,
        category_query_count=qcount,
        page_path=tuple(paths),
        page_url=pa.array([site + p for p in paths], pa.string()),
        page_title_json=pa.array([json_str(t) for t in titles], pa.string()),
        page_view_props=pa.array(props, pa.string()),
        product_id_json=pa.array([json_str(p) for p in products], pa.string()),
        query_json=pa.array([json_str(q) for q in queries], pa.string()),
        home_page=0,
        cart_page=cart_page,
        checkout_pages=(cart_page + 1, cart_page + 2, cart_page + 3),
        confirmation_page=cart_page + 4,
    )
