"""GeoJSON FeatureCollections built by PostgreSQL and passed through as bytes.

PERFORMANCE.md: ST_AsGeoJSON(record) + string_agg is ~40 % faster than json_agg(json_build_object)
and 2x faster than Python-built GeoJSON. The queryset (already restricted and filtered) decides
the rows; ``.values()`` decides the properties; nothing else is fetched. The ~1 MB document is
never decoded into a Python str (bench: 1.55x -> 1.34x of raw SQL at scale M)."""

from django.core.exceptions import EmptyResultSet
from django.db import connection
from psycopg.adapt import Loader

EMPTY = b'{"type":"FeatureCollection","truncated":false,"count":0,"features":[]}'
# One feature more than the cap is fetched, to learn whether there were more.
FEATURE_SQL = "SELECT count(*), coalesce(string_agg(ST_AsGeoJSON(x.*, %s, 6), ','), '') FROM ({inner} LIMIT %s) x"
# How ST_AsGeoJSON(record) starts each feature; quotes inside property values are always escaped,
# so this only ever matches a feature boundary.
FEATURE_START = b',{"type": "Feature"'


class _RawText(Loader):
    """text column -> bytes, no decode/encode round trip."""

    def load(self, data):
        return bytes(data)


def feature_collection(queryset, *, geom_column: str, fields: list[str], limit: int) -> tuple[bytes, int, bool]:
    """Run ``queryset`` limited to ``limit`` features and return (json_bytes, count, truncated).

    ``fields`` are the property columns (values() names); ``geom_column`` is the geometry column."""
    inner = queryset.order_by().values(*fields, geom_column)
    try:
        sql, params = inner.query.sql_with_params()
    except EmptyResultSet:  # an empty scope (or .none()): nothing to ask the database
        return EMPTY, 0, False
    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("text", _RawText)
        cursor.execute(FEATURE_SQL.format(inner=sql), (geom_column, *params, limit + 1))
        n, features = cursor.fetchone()
    truncated = n > limit
    if truncated:
        features = features[: features.rindex(FEATURE_START)] if limit else b""
    count = min(n, limit)
    head = b'{"type":"FeatureCollection","truncated":%s,"count":%d,"features":[' % (
        b"true" if truncated else b"false",
        count,
    )
    return b"".join((head, features, b"]}")), count, truncated
