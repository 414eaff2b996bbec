#!/usr/bin/env bash
# Create the gridcrm role and database with PostGIS, once. PostGIS and pg_trgm also go into
# template1, so the test database (created by the non-superuser role) has them too.
set -euo pipefail
export PGOPTIONS="--client-min-messages=warning"
if [ -n "${DATABASE_URL:-}" ]; then exit 0; fi
psql_pg() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA "$@"; }
[ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname='gridcrm'")" = 1 ] ||
  psql_pg -c "CREATE ROLE gridcrm LOGIN CREATEDB PASSWORD 'gridcrm'"
for db in template1 gridcrm; do
  if [ "$db" = gridcrm ] && [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname='gridcrm'")" != 1 ]; then
    psql_pg -c "CREATE DATABASE gridcrm OWNER gridcrm"
  fi
  psql_pg -d "$db" -c "CREATE EXTENSION IF NOT EXISTS postgis; CREATE EXTENSION IF NOT EXISTS pg_trgm"
done
# Server settings from PERFORMANCE.md (reloadable ones; shared_buffers needs a restart, left to ops).
psql_pg -c "ALTER SYSTEM SET jit = off" -c "ALTER SYSTEM SET random_page_cost = 1.1" \
  -c "ALTER SYSTEM SET work_mem = '64MB'" -c "ALTER SYSTEM SET max_parallel_workers_per_gather = 1" \
  -c "SELECT pg_reload_conf()" >/dev/null
