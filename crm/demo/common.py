"""Helpers shared by the demo steps: SQL on Django's connection, COPY (rows, or numpy columns in
PostgreSQL's binary format), bulk loads into empty tables, id blocks, audit triggers, and the
city's geometry constants."""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import contextmanager

import numpy as np
from django.db import connection

from crm.demo import names as N

KM_PER_DEG_LAT = 110.57
KM_PER_DEG_LON = 111.32 * math.cos(math.radians(N.DOWNTOWN[1]))


def _execute(sql: str, params: Iterable | None = None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _fetchall(sql: str, params: Iterable | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _copy(table: str, columns: list[str], rows: Iterable[tuple]) -> None:
    """COPY ``rows`` into ``table`` on Django's own connection (so inside its transaction)."""
    connection.ensure_connection()
    with connection.connection.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def _temp_table(name: str, columns: str) -> None:
    _execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
    _execute(f"CREATE TEMP TABLE {name} ({columns})")


@contextmanager
def _bulk_load(table: str, *, even_if_not_empty: bool = False):
    """Load an *empty* table the way the PostgreSQL manual advises ("Populating a Database"): drop
    its secondary indexes and foreign keys, load, then re-create them with their exact names and
    definitions (read from the catalog) and validate the keys in one pass each. Must run inside
    a transaction, so a failure leaves the table as it was. A non-empty table is loaded as is,
    unless ``even_if_not_empty`` (for a mass UPDATE of an indexed column of a table we loaded)."""
    if not even_if_not_empty and _fetchall(f"SELECT EXISTS (SELECT 1 FROM {table})")[0][0]:
        yield
        return
    indexes = _fetchall(
        """
        SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = %s::regclass AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
        """,
        [table],
    )
    fkeys = _fetchall(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
        [table],
    )
    for name, _def in fkeys:
        _execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _def in indexes:
        _execute(f'DROP INDEX "{name}"')
    yield
    for _name, definition in indexes:
        _execute(definition)
    for name, definition in fkeys:
        _execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


def _audit_triggers(models) -> list[tuple[str, str]]:
    """(table, trigger name) of the django-pghistory event triggers on ``models``."""
    import pghistory.trigger
    import pgtrigger

    wanted = {m._meta.label for m in models}
    return [
        (m._meta.db_table, t.get_pgid(m))
        for m, t in pgtrigger.registered()
        if m._meta.label in wanted and isinstance(t, pghistory.trigger.Event)
    ]


# numpy dtype -> (PostgreSQL type, big-endian wire dtype) for binary COPY.
_BINARY_TYPES = {
    "b": ("boolean", "?"),
    "i4": ("int4", ">i4"),
    "i8": ("int8", ">i8"),
    "f8": ("float8", ">f8"),
}


def _wire(a: np.ndarray) -> tuple[np.ndarray, str, str]:
    a = np.asarray(a)
    if a.dtype.kind == "b":
        key = "b"
    elif a.dtype.kind in "iu":
        key = "i4" if a.dtype.itemsize <= 4 else "i8"
    elif a.dtype.kind == "f":
        key = "f8"
    else:
        raise TypeError(f"copy_arrays: numeric or boolean columns only, not {a.dtype}")
    pg, wire = _BINARY_TYPES[key]
    return a, pg, wire


def copy_arrays(table: str, columns: dict[str, np.ndarray], *, chunk_rows: int = 500_000) -> int:
    """Create the temp table ``table`` with one column per numpy array and COPY the arrays into it
    in PostgreSQL's binary format (no per-row Python: 2M rows of ten numbers in about 2 s).
    Numbers and booleans only, no NULLs: use a sentinel and NULLIF/CASE in the SQL that reads it;
    text is built in SQL from indexes into word lists."""
    names = list(columns)
    arrays, pg_types, wires = zip(*(_wire(columns[c]) for c in names), strict=True)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("copy_arrays: columns of different lengths")
    _temp_table(table, ", ".join(f"{c} {t}" for c, t in zip(names, pg_types, strict=True)))
    fields = [("nf", ">i2")]
    for i, wire in enumerate(wires):
        fields += [(f"l{i}", ">i4"), (f"v{i}", wire)]
    dtype = np.dtype(fields)
    connection.ensure_connection()
    with (
        connection.connection.cursor() as cur,
        cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as cp,
    ):
        cp.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00")
        for lo in range(0, n, chunk_rows):
            hi = min(n, lo + chunk_rows)
            buf = np.empty(hi - lo, dtype=dtype)
            buf["nf"] = len(names)
            for i, a in enumerate(arrays):
                buf[f"l{i}"] = np.dtype(wires[i]).itemsize
                buf[f"v{i}"] = a[lo:hi]
            cp.write(buf.tobytes())
        cp.write(b"\xff\xff")
    _execute(f"ANALYZE {table}")
    return n


def reserve_ids(table: str, n: int) -> int:
    """Take a block of ``n`` ids from ``table``'s id sequence and return the first: rows can then be
    written with known ids (children reference them without a round trip). The table is locked
    against other writers until the end of the transaction."""
    if n <= 0:
        return 0
    (seq,) = _fetchall("SELECT pg_get_serial_sequence(%s, 'id')", [table])[0]
    _execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
    (last,) = _fetchall("SELECT setval(%s, nextval(%s) + %s - 1)", [seq, seq, n])[0]
    return int(last) - n + 1


def table_is_empty(table: str) -> bool:
    return not _fetchall(f"SELECT EXISTS (SELECT 1 FROM {table})")[0][0]
