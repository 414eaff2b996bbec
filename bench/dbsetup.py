"""The bench database: created once per scale as the app's role, migrated, loaded with seed_demo --fill."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER_URL = "postgis://gridcrm:gridcrm@127.0.0.1:5432/"


def bench_db_name(scale: str) -> str:
    return f"gridcrm_bench_{scale.lower()}"


def database_url(db_name: str) -> str:
    """The bench database's URL on the server of BENCH_DATABASE_URL (default: the local gridcrm role)."""
    parts = urlsplit(os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER_URL))
    return urlunsplit((parts.scheme, parts.netloc, f"/{db_name}", "", ""))


def ensure_database(db_name: str) -> bool:
    """Create ``db_name`` owned by the connecting role if it is missing (template1 carries PostGIS and
    pg_trgm). Returns True when it was created."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url(db_name))
    conninfo = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": parts.username,
        "password": parts.password,
        "dbname": "postgres",
    }
    with psycopg.connect(**{k: v for k, v in conninfo.items() if v is not None}, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone():
            return False
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db_name), sql.Identifier(parts.username))
        )
        return True


def configure_django(db_name: str) -> None:
    """Point Django at the bench database with the test settings (MD5 hasher, DEBUG off), and let
    the test client's host through."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ["DATABASE_URL"] = database_url(db_name)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    hosts = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]
    os.environ["DJANGO_ALLOWED_HOSTS"] = ",".join(dict.fromkeys([*hosts, "testserver"]))
    import django

    django.setup()


def migrate_and_load(scale: str, seed: int, log=print) -> None:
    """Migrate, then ``seed_demo --fill``: everything on a new database; on one loaded before the
    account steps existed (people, leads, activities, tasks ...), only the steps whose table is
    empty; nothing when all are loaded."""
    from django.core.management import call_command

    log("migrate ...")
    call_command("migrate", interactive=False, verbosity=0)
    log(f"seed_demo --scale {scale} --seed {seed} --fill ...")
    call_command("seed_demo", scale=scale, seed=seed, fill=True)
    # A freshly loaded table has no visibility map yet, so every "index-only" scan visits the heap
    # (the funnel's 11k activity rows: 25 ms instead of 9 ms), until autovacuum gets to it. VACUUM
    # now, so that both sides are measured in the steady state production runs in (a few seconds
    # at M when there is little to do).
    from django.db import connection

    # The whole database: a migration that rewrites a table (say every merchant, with its pghistory
    # events written then deleted) leaves dead pages and statistics that mislead the planner.
    # A database loaded before the funnel rollup existed: build it once (the beat task keeps it
    # fresh in production; seed_demo builds it on a new load).
    from crm.models import FunnelRollupState
    from crm.services.funnel_rollup import funnel_rollup_rebuild

    if not FunnelRollupState.objects.exists():
        log(f"funnel rollup: built in {funnel_rollup_rebuild().build_ms} ms")
    log("vacuum (analyze) ...")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
