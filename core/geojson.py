"""GeoJSON FeatureCollections built by PostgreSQL and passed through as text.

PERFORMANCE.md: ST_AsGeoJSON(record) + string_agg is ~40 % faster than json_agg(json_build_object)
and 2x faster than Python-built GeoJSON. The queryset (already restricted and filtered) decides
the rows; ``.values()`` decides the properties; nothing else is fetched."""

from django.core.exceptions import EmptyResultSet
from django.db import connection

EMPTY = '{"type":"FeatureCollection","truncated":false,"count":0,"features":[]}'

FEATURE_SQL = """
SELECT count(*), coalesce(string_agg(f, ',') FILTER (WHERE rn <= %s), '')
FROM (
    SELECT ST_AsGeoJSON(x.*, %s, 6) AS f, row_number() OVER () AS rn
    FROM ({inner} LIMIT %s) x
) y
"""


def feature_collection(queryset, *, geom_column: str, fields: list[str], limit: int) -> tuple[str, int, bool]:
    """Run ``queryset`` limited to ``limit`` features and return (json_text, count, truncated).

    ``fields`` are the property columns (values() names); ``geom_column`` is the geometry column."""
    inner = queryset.order_by().values(*fields, geom_column)
    try:
        sql, params = inner.query.sql_with_params()
    except EmptyResultSet:  # an empty scope (or .none()): nothing to ask the database
        return EMPTY, 0, False
    with connection.cursor() as cursor:
        cursor.execute(FEATURE_SQL.format(inner=sql), (limit, geom_column, *params, limit + 1))
        n, features = cursor.fetchone()
    truncated = n > limit
    count = min(n, limit)
    head = '{"type":"FeatureCollection","truncated":%s,"count":%d,"features":[' % (  # noqa: UP031 (JSON braces)
        "true" if truncated else "false",
        count,
    )
    text = head + features + "]}"
    return text, count, truncated
