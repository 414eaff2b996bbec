"""Follow-up reminders: the scan (due vs overdue by the Asia/Shanghai day, re-runs, closed tasks), the
e-mail claim (idempotent, rolled back on failure, one winner under concurrency), the sweeper, the
notifications API (own only), the header badge and the reminders page."""

import datetime
import socketserver
import threading
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.db import connection
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from config.celery_app import app as celery_app
from core.context_processors import request_memberships
from crm.choices import NotificationEvent, TaskStatus
from crm.models import Notification, Task
from crm.services.tasks import (
    NOTIFICATION_HEADER,
    REQUEUE_AFTER,
    REQUEUE_MAX_AGE,
    business_day_bounds,
    notification_send_email,
    notifications_requeue_unsent,
    reminders_scan,
)
from tests.crm.test_reminders_worker import SlowFileEmailBackend, emails_by_notification
from tests.factories import MerchantFactory, UserFactory

SHANGHAI = ZoneInfo("Asia/Shanghai")
DUE, OVERDUE = NotificationEvent.DUE, NotificationEvent.OVERDUE


def sh(*args) -> datetime.datetime:
    """An Asia/Shanghai wall-clock time."""
    return datetime.datetime(*args, tzinfo=SHANGHAI)


def task(owner, due_at, **kw) -> Task:
    kw.setdefault("title", f"跟进 {due_at:%m-%d %H:%M}")
    return Task.objects.create(owner=owner, due_at=due_at, **kw)


def events(t: Task) -> set[str]:
    return set(Notification.objects.filter(task=t).values_list("event", flat=True))


@pytest.fixture
def am(db):
    return UserFactory(username="am_mail", email="am@bank.example")


# -- The scan ---------------------------------------------------------------------------------------


def test_business_day_is_the_shanghai_day():
    # 2025-03-10 23:30 in Shanghai is 15:30 UTC: the day ends at 16:00 UTC, not at UTC midnight.
    start, end = business_day_bounds(sh(2025, 3, 10, 23, 30))
    assert (start, end) == (sh(2025, 3, 10), sh(2025, 3, 11))
    assert end.astimezone(datetime.UTC) == datetime.datetime(2025, 3, 10, 16, 0, tzinfo=datetime.UTC)


def test_due_today_and_overdue_follow_the_shanghai_day(am):
    now = sh(2025, 3, 10, 23, 30)  # 15:30 UTC
    later_tonight = task(am, sh(2025, 3, 10, 23, 50))
    after_midnight = task(am, sh(2025, 3, 11, 0, 10))  # still 03-10 in UTC, but tomorrow in Shanghai
    this_afternoon = task(am, sh(2025, 3, 10, 16, 0))
    last_week = task(am, sh(2025, 3, 4, 9, 0))
    last_month = task(am, sh(2025, 2, 1, 9, 0))  # overdue for weeks: not news, not e-mailed
    right_now = task(am, now)  # due this very minute: due, not yet overdue

    scan = reminders_scan(now=now)

    assert events(later_tonight) == {DUE}
    assert events(after_midnight) == set()
    assert events(this_afternoon) == {OVERDUE}
    assert events(last_week) == {OVERDUE}
    assert events(last_month) == set()
    assert events(right_now) == {DUE}
    assert len(scan.due_ids) == 2 and len(scan.overdue_ids) == 2
    assert set(Notification.objects.values_list("user_id", flat=True)) == {am.pk}


def test_early_morning_in_shanghai_is_a_new_day(am):
    now = sh(2025, 3, 11, 0, 30)  # 2025-03-10 16:30 UTC
    tonight = task(am, sh(2025, 3, 11, 23, 0))  # 03-11 15:00 UTC: a UTC day later than now, same Shanghai day
    reminders_scan(now=now)
    assert events(tonight) == {DUE}


def test_a_task_is_due_first_then_overdue_once_each(am):
    t = task(am, sh(2025, 3, 10, 15, 0))
    assert reminders_scan(now=sh(2025, 3, 10, 9, 0)).due_ids
    assert events(t) == {DUE}
    assert not reminders_scan(now=sh(2025, 3, 10, 12, 0)).notification_ids  # nothing new
    assert reminders_scan(now=sh(2025, 3, 10, 15, 1)).overdue_ids
    assert reminders_scan(now=sh(2025, 3, 11, 9, 0)).notification_ids == []
    assert events(t) == {DUE, OVERDUE}
    assert Notification.objects.filter(task=t).count() == 2


def test_rerun_creates_no_duplicates(am):
    now = sh(2025, 3, 10, 10, 0)
    for hour in (8, 9, 11, 12):
        task(am, sh(2025, 3, 10, hour, 0))
    first = reminders_scan(now=now)
    assert len(first.notification_ids) == 4
    for _ in range(3):
        assert reminders_scan(now=now).notification_ids == []
    assert Notification.objects.count() == 4


def test_done_and_cancelled_tasks_are_ignored(am):
    now = sh(2025, 3, 10, 10, 0)
    task(am, sh(2025, 3, 10, 9, 0), status=TaskStatus.DONE, done_at=now)
    task(am, sh(2025, 3, 10, 11, 0), status=TaskStatus.CANCELLED)
    assert reminders_scan(now=now).notification_ids == []
    assert not Notification.objects.exists()


def test_notification_goes_to_the_owner_and_batches_continue(db):
    owners = [UserFactory(username=f"own{i}") for i in range(3)]
    now = sh(2025, 3, 10, 10, 0)
    for i in range(7):
        task(owners[i % 3], sh(2025, 3, 9, 9, i))
    first = reminders_scan(now=now, batch=5)
    assert len(first.overdue_ids) == 5
    second = reminders_scan(now=now, batch=5)  # the rest, a minute later
    assert len(second.overdue_ids) == 2
    for n in Notification.objects.select_related("task"):
        assert n.user_id == n.task.owner_id


def test_scan_queues_the_sends_only_on_commit(am, django_capture_on_commit_callbacks):
    task(am, sh(2025, 3, 10, 9, 0))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        reminders_scan(now=sh(2025, 3, 10, 10, 0))
    assert len(callbacks) == 1  # one callback for the batch; not run: the worker test runs it for real
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        reminders_scan(now=sh(2025, 3, 10, 10, 1))
    assert callbacks == []  # nothing new, nothing queued


def test_beat_declares_the_scan_every_minute_and_the_sweeper():
    schedule = django_settings.CELERY_BEAT_SCHEDULE
    scans = [e for e in schedule.values() if e["task"] == "crm.tasks.scan_due_tasks"]
    assert len(scans) == 1
    crontab = scans[0]["schedule"]
    assert len(crontab.minute) == 60 and len(crontab.hour) == 24
    assert scans[0]["options"]["expires"] < 60  # a missed minute is dropped, the next covers it
    sweeps = [e for e in schedule.values() if e["task"] == "crm.tasks.requeue_unsent_notifications"]
    assert len(sweeps) == 1
    celery_app.loader.import_default_modules()
    for name in ("crm.tasks.scan_due_tasks", "crm.tasks.send_notification_email", "crm.tasks.check_merchant_grids"):
        assert name in celery_app.tasks


# -- The e-mail ---------------------------------------------------------------------------------------


@pytest.fixture
def notified(am):
    merchant = MerchantFactory(name="老王面馆")
    task(am, timezone.now() - datetime.timedelta(hours=2), merchant=merchant, title="回访老王")
    (nid,) = reminders_scan().notification_ids
    return Notification.objects.get(pk=nid)


def test_email_is_sent_once_however_often_the_message_comes(notified):
    assert notification_send_email(notification_id=notified.pk) == "sent"
    assert notification_send_email(notification_id=notified.pk) == "already"
    assert notification_send_email(notification_id=notified.pk) == "already"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["am@bank.example"]
    assert "回访老王" in message.subject
    assert "老王面馆" in message.body
    assert message.extra_headers[NOTIFICATION_HEADER] == str(notified.pk)
    notified.refresh_from_db()
    assert notified.emailed_at is not None


def test_due_time_in_the_email_is_shanghai_time(am):
    t = task(am, sh(2025, 3, 10, 8, 5), title="早会后回访")  # 00:05 UTC
    (nid,) = reminders_scan(now=sh(2025, 3, 10, 9, 0)).notification_ids
    notification_send_email(notification_id=nid)
    assert "8:05" in mail.outbox[0].body or "08:05" in mail.outbox[0].body, mail.outbox[0].body
    assert t.pk


def test_no_address_no_email_but_stamped(db):
    user = UserFactory(username="no_mail", email="")
    task(user, timezone.now() - datetime.timedelta(hours=1))
    (nid,) = reminders_scan().notification_ids
    assert notification_send_email(notification_id=nid) == "skipped"
    assert mail.outbox == []
    assert Notification.objects.get(pk=nid).emailed_at is not None
    assert notification_send_email(notification_id=nid) == "already"


def test_a_task_closed_before_the_send_is_not_emailed(notified):
    Task.objects.filter(pk=notified.task_id).update(status=TaskStatus.DONE)
    assert notification_send_email(notification_id=notified.pk) == "skipped"
    assert mail.outbox == []


def test_a_failed_send_rolls_the_claim_back(notified, settings):
    # A real SMTP connection to a port where nobody listens: refused.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 9  # discard port, closed here
    with pytest.raises(OSError):
        notification_send_email(notification_id=notified.pk)
    notified.refresh_from_db()
    assert notified.emailed_at is None  # not lost: the next delivery sends it
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert notification_send_email(notification_id=notified.pk) == "sent"
    assert len(mail.outbox) == 1


def test_unknown_notification_is_a_no_op(db):
    assert notification_send_email(notification_id=987654321) == "already"


@pytest.mark.django_db(transaction=True)
def test_two_deliveries_at_once_send_one_email(tmp_path, settings, monkeypatch):
    """The second delivery's claim waits on the first one's row lock (held through the send), then
    matches nothing: one e-mail."""
    user = UserFactory(username="am_race", email="race@bank.example")
    task(user, timezone.now() - datetime.timedelta(hours=1))
    (nid,) = reminders_scan().notification_ids
    settings.EMAIL_BACKEND = f"{SlowFileEmailBackend.__module__}.SlowFileEmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    monkeypatch.setenv("SLOW_EMAIL_SECONDS", "0.5")
    results = []

    def deliver():
        try:
            results.append(notification_send_email(notification_id=nid))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["already", "sent"]
    assert emails_by_notification(tmp_path) == {nid: 1}


def test_sweeper_requeues_only_unsent_rows_left_behind(am, django_capture_on_commit_callbacks):
    now = timezone.now()
    ts = [task(am, now - datetime.timedelta(hours=h)) for h in (1, 2, 3, 4)]
    left_behind, sent, recent, given_up = (Notification.objects.create(user=am, task=t, event=OVERDUE) for t in ts)
    long_ago = now - REQUEUE_AFTER - datetime.timedelta(minutes=1)
    Notification.objects.filter(pk__in=[left_behind.pk, sent.pk]).update(created_at=long_ago)
    Notification.objects.filter(pk=sent.pk).update(emailed_at=long_ago)
    Notification.objects.filter(pk=given_up.pk).update(created_at=now - REQUEUE_MAX_AGE - REQUEUE_AFTER)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert notifications_requeue_unsent(now=now) == [left_behind.pk]
    assert len(callbacks) == 1
    assert recent.emailed_at is None  # still within the normal queue delay


class RefusingSMTPServer(socketserver.ThreadingTCPServer):
    """A real SMTP conversation on loopback that refuses every recipient (550)."""

    allow_reuse_address = True
    daemon_threads = True

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"220 refuse.example ESMTP\r\n")
            for line in self.rfile:
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    self.wfile.write(b"250 refuse.example\r\n")
                elif verb == b"RCPT":
                    self.wfile.write(b"550 5.1.1 No such user\r\n")
                elif verb == b"QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    self.wfile.write(b"250 ok\r\n")

    def __init__(self):
        super().__init__(("127.0.0.1", 0), self.Handler)


def test_a_refused_address_is_stamped_not_retried_forever(notified, settings):
    server = RefusingSMTPServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = server.server_address
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        assert notification_send_email(notification_id=notified.pk) == "refused"
    finally:
        server.shutdown()
        server.server_close()
    notified.refresh_from_db()
    assert notified.emailed_at is not None
    assert notification_send_email(notification_id=notified.pk) == "already"


# -- The API: own only ------------------------------------------------------------------------------------

LIST = "/api/v1/notifications/"


@pytest.fixture
def inbox(world, merchants):
    """am_a: one read and two unread reminders; am_c: one."""
    now = timezone.now()

    def note(user, merchant, hours, event=OVERDUE, read=False):
        t = task(user, now - datetime.timedelta(hours=hours), merchant=merchant)
        return Notification.objects.create(user=user, task=t, event=event, read_at=now if read else None)

    return {
        "old_read": note(world.am_a, merchants["grid_a"], 30, read=True),
        "unread_1": note(world.am_a, merchants["grid_a"], 20),
        "unread_2": note(world.am_a, None, 10, event=OVERDUE),
        "other": note(world.am_c, merchants["grid_c"], 5),
    }


def test_list_is_own_only_unread_first(world, inbox, api_as):
    body = api_as(world.am_a).get(LIST).json()
    ids = [row["id"] for row in body["results"]]
    assert ids == [inbox["unread_2"].pk, inbox["unread_1"].pk, inbox["old_read"].pk]
    first = body["results"][0]
    assert first["unread"] is True and first["overdue"] is True and first["event"] == "overdue"
    assert first["task"]["merchant"] is None
    assert body["results"][1]["task"]["merchant"]["id"]
    assert api_as(world.am_c).get(LIST).json()["count"] == 1


def test_someone_elses_notification_is_404(world, inbox, api_as):
    client = api_as(world.am_a)
    other = inbox["other"]
    assert client.get(f"{LIST}{other.pk}/").status_code == 404
    assert client.post(f"{LIST}{other.pk}/read/").status_code == 404
    other.refresh_from_db()
    assert other.read_at is None


def test_mark_one_read(world, inbox, api_as):
    client = api_as(world.am_a)
    response = client.post(f"{LIST}{inbox['unread_1'].pk}/read/")
    assert response.status_code == 200
    assert response.json()["unread"] is False
    assert client.get(f"{LIST}unread-count/").json() == {"unread": 1}


def test_read_all_marks_only_mine(world, inbox, api_as):
    assert api_as(world.am_a).post(f"{LIST}read-all/").json() == {"marked": 2}
    assert not Notification.objects.filter(user=world.am_a, read_at__isnull=True).exists()
    inbox["other"].refresh_from_db()
    assert inbox["other"].read_at is None
    # An administrator's scope lists everyone's reminders, but marking read is for one's own.
    admin = api_as(world.admin)
    assert admin.post(f"{LIST}read-all/").json() == {"marked": 0}
    assert admin.post(f"{LIST}{inbox['other'].pk}/read/").status_code == 404
    inbox["other"].refresh_from_db()
    assert inbox["other"].read_at is None


def test_read_only_role_marks_its_own(world, api_as):
    t = task(world.mid_office, timezone.now())
    n = Notification.objects.create(user=world.mid_office, task=t, event=DUE)
    assert api_as(world.mid_office).post(f"{LIST}{n.pk}/read/").status_code == 200


def test_leaver_sees_no_reminder(world, api_as):
    t = task(world.former_am_a, timezone.now())
    n = Notification.objects.create(user=world.former_am_a, task=t, event=DUE)
    client = api_as(world.former_am_a)
    assert client.get(LIST).json()["count"] == 0
    assert client.post(f"{LIST}{n.pk}/read/").status_code == 404
    assert client.get(f"{LIST}unread-count/").json() == {"unread": 0}


def test_anonymous_refused(world, inbox, api_as):
    client = api_as(None)
    assert client.get(LIST).status_code in (401, 403)
    assert client.post(f"{LIST}read-all/").status_code in (401, 403)


# -- The badge and the page ----------------------------------------------------------------------------------


def render_badge(user) -> tuple[str, object]:
    request = RequestFactory().get("/")
    request.user = user
    request.resolver_match = None
    return request, Template("{% load crm_notifications %}{% notifications_link %}")


def test_badge_counts_unread_in_one_query(world, inbox, django_assert_num_queries):
    request, template = render_badge(world.am_a)
    request_memberships(request)  # the header's role label fetched them already
    with django_assert_num_queries(1):
        html = template.render(Context({"request": request}))
    assert 'data-testid="unread-badge">2<' in html
    assert reverse("notifications") in html


def test_badge_for_a_leaver_is_empty_without_a_query(world, django_assert_num_queries):
    t = task(world.former_am_a, timezone.now())
    Notification.objects.create(user=world.former_am_a, task=t, event=DUE)
    request, template = render_badge(world.former_am_a)
    request_memberships(request)
    with django_assert_num_queries(0):
        html = template.render(Context({"request": request}))
    assert "unread-badge" not in html


def test_header_shows_the_badge_on_every_page(world, inbox):
    client = Client()
    client.force_login(world.am_a)
    body = client.get(reverse("home")).content.decode()
    assert 'data-testid="unread-badge">2<' in body


def test_reminders_page(world, inbox):
    client = Client()
    client.force_login(world.am_a)
    response = client.get(reverse("notifications"))
    assert response.status_code == 200
    body = response.content.decode()
    items = response.context["items"]
    assert [i["n"].pk for i in items] == [inbox["unread_2"].pk, inbox["unread_1"].pk, inbox["old_read"].pk]
    assert all(i["overdue"] for i in items)
    assert body.count(' is-overdue" data-notification-id=') == 3
    assert inbox["unread_1"].task.merchant.name in body
    local = timezone.localtime(inbox["unread_1"].task.due_at, SHANGHAI).strftime("%Y-%m-%d %H:%M")
    assert local in body
    assert f'data-notification-id="{inbox["other"].pk}"' not in body


def test_reminders_page_marks_read(world, inbox):
    client = Client()
    client.force_login(world.am_a)
    response = client.post(reverse("notification-read", args=[inbox["unread_1"].pk]))
    assert response.status_code == 302
    assert client.post(reverse("notification-read", args=[inbox["other"].pk])).status_code == 404
    assert client.get(reverse("notification-read", args=[inbox["unread_2"].pk])).status_code == 405
    client.post(reverse("notifications-read-all"))
    assert not Notification.objects.filter(user=world.am_a, read_at__isnull=True).exists()
    inbox["other"].refresh_from_db()
    assert inbox["other"].read_at is None
    body = client.get(reverse("home")).content.decode()
    assert "unread-badge" not in body


def test_reminders_page_needs_login(client):
    response = client.get(reverse("notifications"))
    assert response.status_code == 302
