#!/usr/bin/env bash
# Start one Celery worker and one beat in the background and the web server in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
mkdir -p var/log
$BIN/celery -A config worker -l info --concurrency 2 -Q gridcrm >var/log/worker.log 2>&1 &
worker=$!
$BIN/celery -A config beat -l info >var/log/beat.log 2>&1 &
beat=$!
trap 'kill $worker $beat 2>/dev/null || true' EXIT INT TERM
$BIN/python manage.py demo_logins
echo "Celery worker and beat log to var/log/. Stop with Ctrl-C."
$BIN/python manage.py runserver 0.0.0.0:8000
