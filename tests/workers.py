"""Real Celery workers for tests: a subprocess on a test broker and this run's test database."""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from django.db import connection

REPO = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).parent / "celery")


def database_url() -> str:
    """DATABASE_URL of the test database this run uses, for the worker's own connection."""
    db = connection.settings_dict
    assert db["NAME"].startswith("test_"), "refusing to point a worker at a real database"
    auth = quote(db["USER"], safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgis://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


@contextlib.contextmanager
def running_worker(*, broker_url: str, queue: str, pool: str, concurrency: int, name: str, log: Path, env=None):
    """Start ``celery worker`` with the test settings; always stop it (warm, then SIGKILL of its
    process group, which also takes pool children a killed parent left behind)."""
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "TEST_REDIS_URL": broker_url,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    args = [CELERY, "-A", "config", "worker", "-Q", queue, "--pool", pool, "--concurrency", str(concurrency)]
    args += ["-l", "info", "-n", name, "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
