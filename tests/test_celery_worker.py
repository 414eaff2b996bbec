"""The nightly stray check run by a real Celery worker on real Redis, against the test database.

The worker is a subprocess (`celery -A config worker -Q gridcrm --pool solo`) started with the test
settings, DATABASE_URL pointing at this run's test database and the test broker; the test sends the
task by name, as beat would, and watches the database. Data is committed (transactional_db) so the
worker's own connection sees it."""

import os
import subprocess
import time
from pathlib import Path

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.contrib.gis.geos import MultiPolygon, Point, Polygon

from config.celery_app import app as celery_app
from crm.models import GridCheckRun, Merchant, MerchantEvent, MerchantGridFix
from tests.factories import GridFactory, MerchantFactory, SubBranchFactory
from tests.workers import running_worker

TASK_NAME = "crm.tasks.check_merchant_grids"
WAIT_SECONDS = 60


# --- Configuration (no worker needed) ---------------------------------------------------------


def test_beat_schedule_declares_the_nightly_check():
    entries = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == TASK_NAME]
    assert len(entries) == 1, settings.CELERY_BEAT_SCHEDULE
    schedule = entries[0]["schedule"]
    assert isinstance(schedule, crontab)
    # Once a day, at night (Asia/Shanghai, the app's timezone): one hour and one minute.
    assert len(schedule.hour) == 1 and len(schedule.minute) == 1
    assert next(iter(schedule.hour)) < 6
    assert len(schedule.day_of_week) == 7 and len(schedule.day_of_month) == 31
    # The celery app sees the same schedule, and the task it names exists.
    assert celery_app.conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE
    celery_app.loader.import_default_modules()
    assert TASK_NAME in celery_app.tasks


def test_celery_app_config():
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.timezone == "Asia/Shanghai"
    assert conf.task_default_queue == "gridcrm"
    assert conf.broker_url == settings.CELERY_BROKER_URL
    assert conf.task_always_eager is False  # the worker tests below would prove nothing otherwise
    # Re-delivery only after the longest task could have finished (STACK-NOTES: visibility_timeout).
    assert conf.task_time_limit and conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"


def test_tests_use_their_own_redis_database():
    assert settings.CELERY_BROKER_URL != "redis://127.0.0.1:6379/0"


# --- The real worker ------------------------------------------------------------------------------


def _purge_queue():
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge(settings.CELERY_TASK_DEFAULT_QUEUE)


class Worker:
    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def assert_alive(self):
        assert self.proc.poll() is None, f"the worker exited with {self.proc.returncode}:\n{self.output()}"


@pytest.fixture
def celery_worker(transactional_db, tmp_path):
    """A real worker process on the test broker and this run's test database; always stopped."""
    others = celery_app.control.ping(timeout=1.0)
    assert not others, (
        f"another Celery worker already consumes from {settings.CELERY_BROKER_URL}: {others}. "
        "Set TEST_REDIS_URL to a Redis database of your own."
    )
    _purge_queue()
    log = tmp_path / "worker.log"
    name = f"gridcrm-test-{os.getpid()}@%h"
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    broker = settings.CELERY_BROKER_URL
    try:
        with running_worker(broker_url=broker, queue=queue, pool="solo", concurrency=1, name=name, log=log) as proc:
            yield Worker(proc, log)
    finally:
        _purge_queue()


def _wait_for_finished_runs(worker: Worker, n: int) -> list[GridCheckRun]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        worker.assert_alive()
        runs = list(GridCheckRun.objects.filter(finished_at__isnull=False).order_by("started_at", "pk"))
        if len(runs) >= n:
            return runs
        time.sleep(0.25)
    pytest.fail(f"no finished GridCheckRun #{n} within {WAIT_SECONDS} s. Worker log:\n{worker.output()}")


def box(x0, y0, x1, y1):
    return MultiPolygon(Polygon.from_bbox((x0, y0, x1, y1)), srid=4326)


@pytest.fixture
def strays(transactional_db):
    """Three grids side by side at 121.50-121.53 E (away from the factories' cells), g3 retired;
    merchants that are right, wrong, NULL, on a shared border, outside every grid, and in the
    retired grid."""
    sb = SubBranchFactory()
    g1 = GridFactory(sub_branch=sb, code="T-G1", geom=box(121.50, 30.50, 121.51, 30.51))
    g2 = GridFactory(sub_branch=sb, code="T-G2", geom=box(121.51, 30.50, 121.52, 30.51))
    g3 = GridFactory(sub_branch=sb, code="T-G3", geom=box(121.52, 30.50, 121.53, 30.51), status="retired")
    assert g1.pk < g2.pk
    p1, p2, p3 = Point(121.505, 30.505, srid=4326), Point(121.515, 30.505, srid=4326), Point(121.525, 30.505)
    nowhere = Point(121.60, 30.60, srid=4326)
    border = Point(121.51, 30.505, srid=4326)  # on g1's and g2's shared edge: the lower id wins
    m = {
        "right_1": MerchantFactory(name="right_1", grid=g1, location=p1),
        "right_2": MerchantFactory(name="right_2", grid=g2, location=p2),
        "right_nowhere": MerchantFactory(name="right_nowhere", grid=None, location=nowhere),
        "wrong": MerchantFactory(name="wrong", grid=g2, location=p1),
        "null": MerchantFactory(name="null", grid=None, location=p2),
        "border": MerchantFactory(name="border", grid=g2, location=border),
        "outside": MerchantFactory(name="outside", grid=g1, location=nowhere),
        "retired": MerchantFactory(name="retired", grid=g3, location=Point(*p3.coords, srid=4326)),
    }
    expected = {
        "wrong": (g2.pk, g1.pk),
        "null": (None, g2.pk),
        "border": (g2.pk, g1.pk),
        "outside": (g1.pk, None),
        "retired": (g3.pk, None),  # only active grids hold merchants
    }
    return m, expected


def _snapshot():
    return {
        m.pk: (m.grid_id, m.updated_at, MerchantEvent.objects.filter(pgh_obj_id=m.pk).count())
        for m in Merchant.objects.all()
    }


@pytest.mark.celery_worker
def test_worker_fixes_strays_and_a_second_run_fixes_none(celery_worker, strays):
    merchants, expected = strays
    before = _snapshot()
    assert GridCheckRun.objects.count() == 0

    result = celery_app.send_task(TASK_NAME)  # by name, as beat does
    assert result.id
    (run,) = _wait_for_finished_runs(celery_worker, 1)

    assert run.fixed == len(expected), celery_worker.output()
    assert run.checked == Merchant.objects.count() == len(merchants)
    assert run.finished_at >= run.started_at

    fixes = {f.merchant_id: (f.from_grid_id, f.to_grid_id) for f in MerchantGridFix.objects.filter(run=run)}
    assert fixes == {merchants[k].pk: v for k, v in expected.items()}

    after = _snapshot()
    for key, merchant in merchants.items():
        grid_before, updated_before, events_before = before[merchant.pk]
        grid_after, updated_after, events_after = after[merchant.pk]
        if key in expected:
            assert (grid_before, grid_after) == expected[key], key
            # The move is in the audit history (pghistory's trigger sees the SQL UPDATE).
            assert events_after == events_before + 1, key
            latest = MerchantEvent.objects.filter(pgh_obj_id=merchant.pk).order_by("-pgh_id").first()
            assert latest.pgh_label == "update" and latest.grid_id == grid_after, key
        else:
            assert (grid_after, updated_after, events_after) == (grid_before, updated_before, events_before), key

    # The task went through the worker on the queue, not through an eager call in this process.
    log = celery_worker.output()
    assert f"Task {TASK_NAME}[{result.id}] received" in log, log
    assert f"Task {TASK_NAME}[{result.id}] succeeded" in log, log
    assert f"'fixed': {len(expected)}" in log, log

    # Again: nothing left to fix, nothing touched.
    second = check_merchant_grids_delay()
    runs = _wait_for_finished_runs(celery_worker, 2)
    assert runs[0].pk == run.pk
    again = runs[1]
    assert again.fixed == 0
    assert again.checked == len(merchants)
    assert not MerchantGridFix.objects.filter(run=again).exists()
    assert _snapshot() == after
    assert f"Task {TASK_NAME}[{second.id}] succeeded" in celery_worker.output()


def check_merchant_grids_delay():
    from crm.tasks import check_merchant_grids

    return check_merchant_grids.delay()


@pytest.mark.celery_worker
def test_worker_with_nothing_to_fix(celery_worker, transactional_db):
    """An empty database is a run with 0 checked and 0 fixed, not an error."""
    check_merchant_grids_delay()
    (run,) = _wait_for_finished_runs(celery_worker, 1)
    assert (run.checked, run.fixed) == (0, 0)
