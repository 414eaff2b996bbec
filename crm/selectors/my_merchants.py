"""An account manager's own merchants with the date of their last visit (我的商户 / 最近走访).

ONE statement answers a page: the count of the user's merchants and the page itself, built into
JSON by PostgreSQL and passed through as bytes (no model instances, no serializer):

* the merchants are ``Merchant.objects.restrict(user)`` (the grids the user may view) owned by the
  user: one taken over from a colleague counts, one the user still owns but that now lies in a grid
  outside their scope does not;
* ``last_visit_at`` is a correlated sub-select of the latest *visit* (calls and events do not
  count), an index-only probe of the partial index ``activity_last_visit`` (merchant_id,
  occurred_at DESC) WHERE kind = 'visit' per merchant: the plan of a LATERAL ... LIMIT 1;
* the count runs on the queryset *without* that sub-select (a COUNT over the annotated queryset
  would evaluate it again for every merchant).

Never-visited merchants (空白户) come first by default: they are the ones to visit."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import connection
from django.db.models import F, OuterRef, Subquery
from django.utils.translation import gettext as _
from psycopg.adapt import Loader

from crm.choices import ActivityKind
from crm.models import Activity, Merchant

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
DEFAULT_ORDERING = "last_visit_at"

# ordering parameter -> (ORM ordering of the page, the same order for json_agg over its rows)
ORDERINGS = {
    "last_visit_at": (
        (F("last_visit_at").asc(nulls_first=True), "id"),
        "x.last_visit_at ASC NULLS FIRST, x.id",
    ),
    "-last_visit_at": (
        (F("last_visit_at").desc(nulls_last=True), "id"),
        "x.last_visit_at DESC NULLS LAST, x.id",
    ),
    "name": (("name", "id"), "x.name, x.id"),
}

COLUMNS = ("id", "name", "status", "grid_id", "address", "last_visit_at")

# last_visit_at is written by json_build_object as ISO 8601 with its offset, in the connection's
# time zone (UTC: "2026-10-01T01:30:00+00:00", the same instant as DRF's "...09:30:00+08:00").
# Formatting it in Asia/Shanghai in SQL (to_char + the zone's offset per row) cost 1.5 ms per
# 500 rows, 15 % of the statement.
PAGE_SQL = """
SELECT (SELECT count(*) FROM (__COUNT__) c),
       (SELECT coalesce(json_agg(json_build_object(
                    'id', x.id, 'name', x.name, 'status', x.status, 'grid', x.grid_id,
                    'address', x.address, 'last_visit_at', x.last_visit_at)
                ORDER BY __ORDER__), '[]')::text
          FROM (__PAGE__) x)
"""


class _RawText(Loader):
    """text column -> bytes: the page's JSON goes to the response without a decode/encode."""

    def load(self, data):
        return bytes(data)


@dataclass(frozen=True)
class MyMerchantsQuery:
    ordering: str = DEFAULT_ORDERING
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE


def _whole(value, name: str, low: int, high: int | None, message: str) -> int:
    text = str(value)
    if not text.isdigit() or len(text) > 9 or int(text) < low or (high is not None and int(text) > high):
        raise ValidationError({name: [message]})
    return int(text)


def parse_my_merchants_query(params) -> MyMerchantsQuery:
    """Validate the query parameters (``ordering``, ``page``, ``page_size``); a bad one is a
    ValidationError naming it."""
    ordering = params.get("ordering") or DEFAULT_ORDERING
    if ordering not in ORDERINGS:
        raise ValidationError({"ordering": [_("Choose one of: %(choices)s.") % {"choices": ", ".join(ORDERINGS)}]})
    page = params.get("page") or "1"
    page = _whole(page, "page", 1, None, _("A page number is a whole number from 1."))
    size = params.get("page_size") or DEFAULT_PAGE_SIZE
    size = _whole(
        size,
        "page_size",
        1,
        MAX_PAGE_SIZE,
        _("page_size must be a whole number from 1 to %(max)d.") % {"max": MAX_PAGE_SIZE},
    )
    return MyMerchantsQuery(ordering=ordering, page=page, page_size=size)


def my_merchants_page(*, user, query: MyMerchantsQuery) -> tuple[int, bytes]:
    """(count, JSON array of the page's rows as bytes): ``user``'s own merchants within their view
    scope, each ``{id, name, status, grid, address, last_visit_at}``. One statement."""
    merchants = Merchant.objects.restrict(user, "view").filter(owner_id=user.pk)
    last_visit = (
        Activity.objects.filter(merchant=OuterRef("pk"), kind=ActivityKind.VISIT)
        .order_by("-occurred_at")
        .values("occurred_at")[:1]
    )
    orm_order, json_order = ORDERINGS[query.ordering]
    start = (query.page - 1) * query.page_size
    page = (
        merchants.annotate(last_visit_at=Subquery(last_visit))
        .order_by(*orm_order)
        .values(*COLUMNS)[start : start + query.page_size]
    )
    try:
        count_sql, count_params = merchants.order_by().values("pk").query.sql_with_params()
        page_sql, page_params = page.query.sql_with_params()
    except EmptyResultSet:  # no scope (a leaver, a new user): nothing to ask the database
        return 0, b"[]"
    sql = PAGE_SQL.replace("__COUNT__", count_sql).replace("__ORDER__", json_order).replace("__PAGE__", page_sql)
    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("text", _RawText)
        cursor.execute(sql, [*count_params, *page_params])
        count, rows = cursor.fetchone()
    return count, rows
