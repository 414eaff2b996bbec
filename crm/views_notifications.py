"""The reminder list page (/notifications/): the user's own notifications, unread first."""

from django.contrib.auth.decorators import login_required
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from crm.choices import TaskStatus
from crm.models import Notification
from crm.services.tasks import notifications_mark_read
from crm.templatetags.crm_notifications import unread_notification_count

#: The page shows this many; older read reminders are not worth scrolling to.
PAGE_SIZE = 200


def _own(request):
    # restrict() first (a leaver sees nothing), then one's own: an administrator's scope shows
    # everyone's reminders, their inbox only theirs.
    return Notification.objects.restrict(request.user).filter(user_id=request.user.pk)


@login_required
def notifications_page(request):
    unread = ExpressionWrapper(Q(read_at__isnull=True), output_field=BooleanField())
    rows = list(
        _own(request)
        .select_related("task", "task__merchant")
        .alias(unread=unread)
        .order_by("-unread", "-created_at", "-id")[:PAGE_SIZE]
    )
    now = timezone.now()
    items = [
        {"n": n, "overdue": n.task.status == TaskStatus.OPEN and n.task.due_at < now, "unread": n.read_at is None}
        for n in rows
    ]
    return render(
        request,
        "crm/notifications.html",
        {"items": items, "unread_count": unread_notification_count(request)},
    )


@login_required
@require_POST
def notification_read(request, pk: int):
    notification = get_object_or_404(_own(request), pk=pk)
    notifications_mark_read(user=request.user, notification=notification)
    return redirect("notifications")


@login_required
@require_POST
def notifications_read_all(request):
    notifications_mark_read(user=request.user)
    return redirect("notifications")
