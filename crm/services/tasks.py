"""Follow-up reminders: the scan that turns due and overdue tasks into notifications, the e-mail
send, the sweeper that re-queues sends a broker lost, and marking notifications read.

Reminders are rows (``Notification``, unique on task + event), not messages: a retried scan, a
re-delivered send or a second beat never notifies twice, and a lost message is found again from
the rows (see ``notifications_requeue_unsent``)."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from smtplib import SMTPRecipientsRefused

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _

from crm.choices import NotificationEvent, TaskStatus
from crm.models import Notification, Task

logger = logging.getLogger(__name__)

#: Tasks handled per event and scan; the rest is picked up by the next scan a minute later, so
#: one scan's transaction (and the row locks it holds) stays short even after an outage.
SCAN_BATCH = 2000
#: Only tasks that became overdue this recently are notified "overdue": a reminder is about a
#: change, and a database with years of stale open tasks must not e-mail them all on the first scan.
#: A week also covers any outage of the scan.
OVERDUE_LOOKBACK = datetime.timedelta(days=7)
#: A notification still not e-mailed this long after it was created has lost its message (the
#: whole worker died and the broker would only re-deliver after its visibility timeout, or the
#: broker lost it): the sweeper queues its send again. Well above a normal queue delay.
REQUEUE_AFTER = datetime.timedelta(minutes=15)
REQUEUE_BATCH = 1000
#: ... but not forever: a reminder nobody could e-mail for two days is left to the in-app list.
REQUEUE_MAX_AGE = datetime.timedelta(days=2)
#: Seconds an SMTP conversation may take. The send holds its claim (a row lock) open meanwhile.
EMAIL_TIMEOUT = 30
#: A header naming the notification in every reminder e-mail (mail filters, and the kill test).
NOTIFICATION_HEADER = "X-Gridcrm-Notification"


@dataclass
class ReminderScan:
    """What one scan created: new notification ids per event (their sends are queued on commit)."""

    now: datetime.datetime
    due_ids: list[int] = field(default_factory=list)
    overdue_ids: list[int] = field(default_factory=list)

    @property
    def notification_ids(self) -> list[int]:
        return [*self.due_ids, *self.overdue_ids]


def business_day_bounds(now: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    """Start and end of ``now``'s day in the bank's time zone (TIME_ZONE, Asia/Shanghai): a task due
    at 00:30 Shanghai time is due *that* day, although it is the previous day in UTC."""
    tz = timezone.get_default_timezone()
    day = timezone.localtime(now, tz).date()
    start = datetime.datetime.combine(day, datetime.time.min, tzinfo=tz)
    end = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time.min, tzinfo=tz)
    return start, end


def reminders_scan(*, now: datetime.datetime | None = None, batch: int = SCAN_BATCH) -> ReminderScan:
    """Create the notifications that are missing, in one transaction, and queue their e-mails.

    * **due**: an open task whose due time lies later today (from ``now`` to the end of the
      Asia/Shanghai day);
    * **overdue**: an open task whose due time has passed (within ``OVERDUE_LOOKBACK``).
    Done and cancelled tasks are ignored. Each notification goes to the task's owner.

    The candidate tasks are locked with ``SELECT ... FOR UPDATE SKIP LOCKED`` (only one scan works
    on a task at a time; a second beat or a slow previous run skips rather than waits), the pairs
    that still lack a notification are read again under the lock, and the rows are written with
    ``bulk_create(ignore_conflicts=True)`` on the unique (task, event) key as the last guard: a
    re-run never doubles. The new notifications' sends are queued only once the rows are
    committed (``on_commit``), so a worker never looks for a row that is not there yet."""
    now = now or timezone.now()
    _start, end_of_day = business_day_bounds(now)
    scan = ReminderScan(now=now)
    open_tasks = Task.objects.filter(status=TaskStatus.OPEN)
    wanted = [
        (NotificationEvent.DUE, open_tasks.filter(due_at__gte=now, due_at__lt=end_of_day), scan.due_ids),
        (
            NotificationEvent.OVERDUE,
            open_tasks.filter(due_at__lt=now, due_at__gte=now - OVERDUE_LOOKBACK),
            scan.overdue_ids,
        ),
    ]
    with transaction.atomic():
        for event, candidates, new_ids in wanted:
            locked = dict(
                candidates.exclude(notifications__event=event)
                .order_by("due_at", "id")
                .select_for_update(skip_locked=True, of=("self",))
                .values_list("id", "owner_id")[:batch]
            )
            if not locked:
                continue
            # Read again under the lock: a scan that committed after this statement's snapshot was
            # taken has its rows visible now, and nobody else can add one for these tasks until we
            # commit. What is missing now is exactly what this scan inserts.
            existing = set(
                Notification.objects.filter(task_id__in=locked, event=event).values_list("task_id", flat=True)
            )
            missing = [task_id for task_id in locked if task_id not in existing]
            Notification.objects.bulk_create(
                [Notification(task_id=task_id, user_id=locked[task_id], event=event) for task_id in missing],
                ignore_conflicts=True,
            )
            new_ids.extend(
                Notification.objects.filter(task_id__in=missing, event=event)
                .order_by("id")
                .values_list("id", flat=True)
            )
        ids = scan.notification_ids
        if ids:
            # robust: a broker that is down must not fail a scan whose rows are committed; the
            # sweeper queues the sends of rows that stay un-e-mailed.
            transaction.on_commit(lambda: _queue_sends(ids), robust=True)
    return scan


def _queue_sends(notification_ids: list[int]) -> None:
    # Imported late: crm.tasks imports this module.
    from crm.tasks import send_notification_email

    with send_notification_email.app.producer_or_acquire() as producer:
        for pk in notification_ids:
            send_notification_email.apply_async((pk,), producer=producer)


def notification_send_email(*, notification_id: int) -> str:
    """E-mail one notification to its user, at most once per success. Returns what happened:
    ``"sent"``, ``"skipped"`` (no address, inactive user, or the task is no longer open: the row is
    still stamped so it is never tried again), ``"refused"`` (the mail server refused the address
    for good; stamped too) or ``"already"`` (another delivery did it).

    **Delivery guarantee: at least once, with the duplicate window shrunk to the commit.**

    The claim is a conditional UPDATE (``emailed_at IS NULL`` → now) that only one delivery can win,
    and it is made *inside* a transaction that stays open while the message is handed to the mail
    backend; the claim becomes visible only when that transaction commits after the send:

    * a worker killed (or an SMTP error raised) before or during the send → PostgreSQL rolls the
      claim back, ``emailed_at`` is NULL again, and the re-delivered task (acks_late +
      reject_on_worker_lost) or the sweeper sends it: **nothing is lost**;
    * two deliveries of the same message at once (a re-delivery racing the original) → the second
      UPDATE waits on the first one's row lock, then finds ``emailed_at`` set and matches 0 rows:
      **nothing is doubled**;
    * the only way to e-mail twice is to die in the microseconds between the mail server accepting
      the message and COMMIT reaching PostgreSQL (or to lose the database in that instant).

    The alternatives with the one ``emailed_at`` column: mark-then-send (commit the claim, then
    send) is at most once, and a worker killed during the send loses the reminder for good: the row
    says "e-mailed", so no re-delivery or sweeper can tell it apart from a sent one. Send-then-mark
    in separate transactions is at least once with the whole send as the duplicate window, and lets
    two concurrent deliveries both send. A missed reminder costs a follow-up with a merchant; a rare
    duplicate costs one extra e-mail, so the claim spans the send. The price is a row lock held for
    the SMTP conversation, bounded by ``EMAIL_TIMEOUT``; nothing else writes notification rows then.
    tests/crm/test_reminders_worker.py kills the worker's pool process in the middle of a batch of
    sends and counts the e-mails: one per notification."""
    with transaction.atomic():
        claimed = Notification.objects.filter(pk=notification_id, emailed_at__isnull=True).update(
            emailed_at=timezone.now()
        )
        if not claimed:
            return "already"
        notification = Notification.objects.select_related("user", "task", "task__merchant").get(pk=notification_id)
        user, task = notification.user, notification.task
        if not (user.email and user.is_active and task.status == TaskStatus.OPEN):
            return "skipped"
        message = _reminder_message(notification)
        message.connection = get_connection(fail_silently=False, timeout=EMAIL_TIMEOUT)
        try:
            message.send(fail_silently=False)
        except SMTPRecipientsRefused:
            # Permanent: the server refuses the address. Keep the stamp (retrying cannot help);
            # the reminder stays in the in-app list.
            logger.warning("reminder %s: the mail server refused the recipient", notification_id)
            return "refused"
    return "sent"


def _reminder_message(notification: Notification) -> EmailMessage:
    task = notification.task
    with translation.override(settings.LANGUAGE_CODE):
        due = formats.date_format(timezone.localtime(task.due_at), "DATETIME_FORMAT")
        if notification.event == NotificationEvent.OVERDUE:
            subject = _("Overdue follow-up: %(title)s") % {"title": task.title}
        else:
            subject = _("Follow-up due today: %(title)s") % {"title": task.title}
        lines = [
            _("Hello %(name)s,") % {"name": notification.user},
            "",
            _("Task: %(title)s") % {"title": task.title},
        ]
        if task.merchant_id:
            lines.append(_("Merchant: %(name)s") % {"name": task.merchant.name})
        lines.append(_("Due: %(due)s") % {"due": due})
        lines += ["", _("Open the CRM to see your reminders.")]
    return EmailMessage(
        subject=subject,
        body="\n".join(lines),
        to=[notification.user.email],
        headers={NOTIFICATION_HEADER: str(notification.pk)},
    )


def notifications_requeue_unsent(
    *, now: datetime.datetime | None = None, older_than: datetime.timedelta = REQUEUE_AFTER, batch: int = REQUEUE_BATCH
) -> list[int]:
    """The sweeper: queue the send again for notifications that should have been e-mailed long ago.

    A send killed mid-way is re-delivered at once (acks_late + reject_on_worker_lost); this covers
    the rest: the whole worker killed (Redis re-delivers only after the visibility timeout), a
    broker restart that lost the queue, a broker down when the scan committed. Rows whose send is
    running right now are locked by that send's claim and skipped (SKIP LOCKED). If the original
    message is merely late, both run and the conditional claim lets only one of them e-mail."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Notification.objects.filter(
                emailed_at__isnull=True, created_at__lt=now - older_than, created_at__gte=now - REQUEUE_MAX_AGE
            )
            .order_by("id")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:batch]
        )
        if ids:
            transaction.on_commit(lambda: _queue_sends(ids), robust=True)
    return ids


def notifications_mark_read(*, user, notification: Notification | None = None) -> int:
    """Mark one notification, or all of ``user``'s unread ones, read. Only the user's own rows,
    whatever their scope (an administrator marks their own, not everyone's). Returns how many."""
    with transaction.atomic():
        rows = Notification.objects.restrict(user).filter(user_id=user.pk, read_at__isnull=True)
        if notification is not None:
            rows = rows.filter(pk=notification.pk)
        return rows.update(read_at=timezone.now())
