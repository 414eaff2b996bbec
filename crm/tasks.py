"""Thin Celery tasks: load, call a service, stamp what was done."""

from smtplib import SMTPException

from celery import shared_task

from crm.services import merchants_fix_stray_grids
from crm.services.funnel_rollup import funnel_rollup_rebuild
from crm.services.tasks import notification_send_email, notifications_requeue_unsent, reminders_scan


@shared_task(name="crm.tasks.check_merchant_grids")
def check_merchant_grids() -> dict:
    run = merchants_fix_stray_grids()
    return {"run": run.pk, "checked": run.checked, "fixed": run.fixed}


@shared_task(name="crm.tasks.scan_due_tasks")
def scan_due_tasks() -> dict:
    """Every minute (CELERY_BEAT_SCHEDULE): notifications for tasks that fall due or become
    overdue; their e-mails are queued when the rows are committed."""
    scan = reminders_scan()
    return {"due": len(scan.due_ids), "overdue": len(scan.overdue_ids)}


# A mail server that is down or refuses for a while: retry with backoff (each retry is a new
# message; the claim in the service makes any of them e-mail at most once per success).
@shared_task(
    name="crm.tasks.send_notification_email",
    autoretry_for=(SMTPException, OSError),
    retry_backoff=30,
    retry_backoff_max=600,
    max_retries=8,
    soft_time_limit=90,
    time_limit=120,
)
def send_notification_email(notification_id: int) -> str:
    """E-mail one notification; ``emailed_at`` is the stamp (see notification_send_email for the
    delivery guarantee)."""
    return notification_send_email(notification_id=notification_id)


@shared_task(name="crm.tasks.requeue_unsent_notifications")
def requeue_unsent_notifications() -> dict:
    """Every 15 minutes: queue again the sends that a dead worker or a lost queue left behind."""
    return {"requeued": len(notifications_requeue_unsent())}


@shared_task(name="crm.tasks.refresh_funnel_rollup", soft_time_limit=240, time_limit=300)
def refresh_funnel_rollup() -> dict:
    """Every 10 minutes: rebuild the funnel rollup (reports add the rows written since)."""
    state = funnel_rollup_rebuild()
    return {"covers_before": state.covers_before.isoformat(), "build_ms": state.build_ms}
