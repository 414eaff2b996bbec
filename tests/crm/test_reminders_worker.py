"""Reminder e-mails sent by a real Celery worker (prefork pool) on real Redis, and the worker's pool
process killed (SIGKILL) in the middle of the batch: nothing lost, nothing doubled.

Set-up as in tests/test_celery_worker.py (a worker subprocess on this run's test database, data
committed with transactional_db), with three differences:
  * its own Redis database, ``TEST_REMINDERS_REDIS_URL`` (default db 14), so it never meets the
    stray-check worker test or another developer's run on db 15; the test sends to it explicitly;
  * a prefork pool of two processes (acks_late, reject_on_worker_lost, prefetch 1 from settings);
  * e-mail through ``SlowFileEmailBackend``: Django's file backend, one file per message, that first
    drops a marker (its pid and notification id) and waits, so the test can kill a pool process
    while it is sending."""

import os
import re
import signal
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.mail.backends import filebased
from django.utils import timezone

from config.celery_app import app as celery_app
from crm.choices import NotificationEvent, TaskStatus
from crm.models import Notification, Task
from crm.services.tasks import NOTIFICATION_HEADER, business_day_bounds
from tests.factories import GridFactory, MerchantFactory, UserFactory
from tests.test_celery_worker import Worker
from tests.workers import running_worker

BROKER_URL = os.environ.get("TEST_REMINDERS_REDIS_URL", "redis://127.0.0.1:6379/14")
QUEUE = settings.CELERY_TASK_DEFAULT_QUEUE
SCAN = "crm.tasks.scan_due_tasks"
SEND = "crm.tasks.send_notification_email"
SEND_SECONDS = 0.6  # per e-mail in the worker: 30 e-mails over 2 processes take ~9 s
WAIT_SECONDS = 90
BATCH = 30


# -- The slowed-down mail backend (loaded by the worker through TEST_EMAIL_BACKEND) -------------------


class SlowFileEmailBackend(filebased.EmailBackend):
    """Django's file-based backend, one file per connection (so per e-mail), that announces a send
    with a marker file ``<pid>-<notification ids>`` and waits ``SLOW_EMAIL_SECONDS`` before
    writing. A process killed while the marker exists was killed in the middle of a send."""

    def _get_filename(self):
        if self._fname is None:
            self._fname = os.path.join(self.file_path, f"{uuid.uuid4().hex}.eml")
        return self._fname

    def send_messages(self, email_messages):
        marker = None
        markers = os.environ.get("SLOW_EMAIL_MARKERS")
        if markers:
            ids = ",".join(m.extra_headers.get(NOTIFICATION_HEADER, "") for m in email_messages)
            marker = Path(markers) / f"{os.getpid()}-{ids}"
            marker.write_text(str(time.time()))
        time.sleep(float(os.environ.get("SLOW_EMAIL_SECONDS", "0")))
        sent = super().send_messages(email_messages)
        if marker is not None:
            marker.unlink(missing_ok=True)
        return sent


def emails_by_notification(mail_dir: Path) -> Counter:
    """How many e-mails each notification got, read from the messages written."""
    found = Counter()
    for path in mail_dir.glob("*.eml"):
        for match in re.finditer(rf"^{NOTIFICATION_HEADER}: (\d+)\r?$", path.read_text(), re.M):
            found[int(match.group(1))] += 1
    return found


# -- The worker -----------------------------------------------------------------------------------


def _broker():
    return celery_app.connection_for_write(BROKER_URL)


def _reset_broker():
    with _broker() as conn:
        client = conn.default_channel.client
        client.delete(QUEUE, "unacked", "unacked_index", "unacked_mutex")


def _broker_idle() -> bool:
    with _broker() as conn:
        client = conn.default_channel.client
        return client.llen(QUEUE) == 0 and client.hlen("unacked") == 0


def send_by_name(name: str, args=None) -> str:
    """Send a task to the worker's broker, by name, as beat does."""
    with _broker() as conn:
        return celery_app.send_task(name, args=args, connection=conn).id


class ReminderWorker(Worker):
    def __init__(self, proc, log, mail_dir: Path, markers: Path):
        super().__init__(proc, log)
        self.mail_dir = mail_dir
        self.markers = markers

    def full_log(self) -> str:
        return self.log.read_text(errors="replace")

    def pool_pids(self) -> set[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(p) for p in children.read_text().split()} if children.exists() else set()


@pytest.fixture
def reminder_worker(transactional_db, tmp_path):
    """A prefork worker (2 processes) on the reminders' own Redis database; always stopped."""
    with _broker() as conn:
        others = celery_app.control.ping(timeout=1.0, connection=conn)
    assert not others, f"another Celery worker consumes from {BROKER_URL}: {others}. Set TEST_REMINDERS_REDIS_URL."
    _reset_broker()
    mail_dir, markers = tmp_path / "mail", tmp_path / "sending"
    mail_dir.mkdir()
    markers.mkdir()
    env = {
        "TEST_EMAIL_BACKEND": f"{__name__}.SlowFileEmailBackend",
        "TEST_EMAIL_FILE_PATH": str(mail_dir),
        "SLOW_EMAIL_SECONDS": str(SEND_SECONDS),
        "SLOW_EMAIL_MARKERS": str(markers),
    }
    log = tmp_path / "worker.log"
    name = f"gridcrm-reminders-{os.getpid()}@%h"
    try:
        with running_worker(
            broker_url=BROKER_URL, queue=QUEUE, pool="prefork", concurrency=2, name=name, log=log, env=env
        ) as proc:
            yield ReminderWorker(proc, log, mail_dir, markers)
    finally:
        _reset_broker()


def wait_until(worker: ReminderWorker, what: str, check, seconds: float = WAIT_SECONDS, every: float = 0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worker.assert_alive()
        result = check()
        if result:
            return result
        time.sleep(every)
    pytest.fail(f"{what}: not within {seconds} s. Worker log:\n{worker.output()}")


# -- The data -------------------------------------------------------------------------------------


@pytest.fixture
def due_batch(transactional_db):
    """BATCH open tasks of two account managers (with e-mail addresses): two thirds overdue, one third
    due later today (Asia/Shanghai); plus a done and a cancelled task that must stay silent.
    Returns {task_id: expected events}."""
    now = timezone.now()
    _start, end_of_day = business_day_bounds(now)
    left = end_of_day - now
    grid = GridFactory()
    owners = [UserFactory(username=f"am{i}", email=f"am{i}@bank.example") for i in range(2)]
    expected = {}
    for i in range(BATCH):
        merchant = MerchantFactory(grid=grid)
        overdue = i % 3 != 0 or left < timedelta(minutes=5)  # near midnight every task is overdue
        due_at = now - timedelta(hours=1 + i) if overdue else now + min(timedelta(hours=2), left / 2)
        task = Task.objects.create(owner=owners[i % 2], merchant=merchant, title=f"回访 {i}", due_at=due_at)
        expected[task.pk] = {NotificationEvent.OVERDUE if overdue else NotificationEvent.DUE}
    for status in (TaskStatus.DONE, TaskStatus.CANCELLED):
        Task.objects.create(owner=owners[0], title=f"已结束 {status}", due_at=now - timedelta(hours=3), status=status)
    return expected


def all_emailed():
    return (
        Notification.objects.exists()
        and not Notification.objects.filter(emailed_at__isnull=True).exists()
        and _broker_idle()
    )


# -- The test -------------------------------------------------------------------------------------


@pytest.mark.celery_worker
def test_pool_process_killed_mid_batch_nothing_lost_nothing_doubled(reminder_worker, due_batch):
    worker = reminder_worker
    first_scan = send_by_name(SCAN)

    # The batch is being sent: some e-mails written, and a pool process in the middle of one.
    def sending_now():
        if sum(emails_by_notification(worker.mail_dir).values()) < 5:
            return None
        for marker in worker.markers.iterdir():
            try:
                started = float(marker.read_text())
            except (FileNotFoundError, ValueError):  # just finished, or still being written
                continue
            if time.time() - started < SEND_SECONDS / 3:  # well inside its wait: not about to write
                return marker
        return None

    marker = wait_until(worker, "a send in progress after five e-mails", sending_now, every=0.02)
    pid, notification_id = (int(part) for part in marker.name.split("-"))
    assert pid in worker.pool_pids() and pid != worker.proc.pid, "the marker must name a pool process"
    os.kill(pid, signal.SIGKILL)
    killed_at = timezone.now()
    written_before_kill = emails_by_notification(worker.mail_dir)
    assert notification_id not in written_before_kill, "killed before its e-mail was written"

    # Its claim was rolled back with the dead process's transaction; the prefork parent replaces the
    # process and the message, acked late and rejected on worker loss, is delivered again.
    wait_until(worker, "a new pool process", lambda: pid not in worker.pool_pids() and len(worker.pool_pids()) == 2)
    second_scan = send_by_name(SCAN)  # beat's next minute: finds nothing new
    wait_until(worker, "every notification e-mailed", all_emailed, every=0.25)
    time.sleep(2 * SEND_SECONDS)  # a late duplicate would land now

    notifications = list(Notification.objects.all())
    events = {}
    for n in notifications:
        events.setdefault(n.task_id, set()).add(n.event)
    assert events == due_batch, "one notification per due task and event, none for done or cancelled tasks"
    assert len(notifications) == len({(n.task_id, n.event) for n in notifications}) == BATCH

    emails = emails_by_notification(worker.mail_dir)
    assert set(emails) == {n.pk for n in notifications}, "nothing lost"
    assert set(emails.values()) == {1}, f"nothing doubled: {emails}"
    assert len(list(worker.mail_dir.glob("*.eml"))) == len(notifications)

    killed = Notification.objects.get(pk=notification_id)
    assert killed.emailed_at > killed_at, "the killed send was redone after the kill, once"

    log = worker.full_log()
    assert re.search(r"WorkerLostError|SIGKILL|signal 9", log), log
    assert f"Task {SCAN}[{first_scan}] succeeded" in log, log
    assert f"Task {SCAN}[{second_scan}] succeeded" in log and "{'due': 0, 'overdue': 0}" in log, log
    # The killed send, and only it, was delivered a second time (acks_late + reject_on_worker_lost),
    # and that second run is the one that e-mailed.
    received = Counter(re.findall(rf"Task {re.escape(SEND)}\[([0-9a-f-]+)\] received", log))
    redelivered = [task_id for task_id, n in received.items() if n > 1]
    assert len(redelivered) == 1, received
    assert re.search(rf"Task {re.escape(SEND)}\[{redelivered[0]}\] succeeded in [0-9.]+s: 'sent'", log), log

    # Every message delivered once more (a broker re-delivery, the sweeper racing the queue): no e-mail.
    for n in notifications:
        send_by_name(SEND, args=[n.pk])
    wait_until(worker, "the re-deliveries consumed", _broker_idle, every=0.25)
    assert emails_by_notification(worker.mail_dir) == emails
