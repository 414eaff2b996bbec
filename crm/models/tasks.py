"""Follow-ups, their reminders, and handovers of an account manager's book (管户移交)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.choices import NotificationEvent, TaskStatus
from grids.scoping import RestrictedManager


class Task(models.Model):
    """A follow-up with a due time for its owner, usually the next step of an activity."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="tasks")
    merchant = models.ForeignKey("crm.Merchant", on_delete=models.CASCADE, null=True, blank=True, related_name="tasks")
    activity = models.ForeignKey("crm.Activity", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    lead = models.ForeignKey("crm.Lead", on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks")
    title = models.CharField(_("title"), max_length=200)
    due_at = models.DateTimeField(_("due"))
    status = models.CharField(_("status"), max_length=10, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    done_at = models.DateTimeField(_("done at"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = RestrictedManager()
    scope_path = "task"

    class Meta:
        verbose_name = _("task")
        ordering = ["due_at", "id"]
        indexes = [
            # Today's tasks of one person (0.05 ms, PERFORMANCE.md) and the reminder scan.
            models.Index(fields=["owner", "due_at"], name="task_owner_due", condition=Q(status="open")),
            models.Index(fields=["due_at"], name="task_open_due", condition=Q(status="open")),
        ]

    def __str__(self):
        return self.title


class Notification(models.Model):
    """One reminder per task and event (due / overdue). The unique key makes a retried or
    re-delivered job harmless; ``emailed_at`` is set by a conditional update, once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=10, choices=NotificationEvent.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    objects = RestrictedManager()
    scope_path = "own"

    class Meta:
        verbose_name = _("notification")
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["task", "event"], name="notification_once_per_task_event")]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_unread")]

    def __str__(self):
        return f"{self.task} · {self.get_event_display()}"


class Handover(models.Model):
    """管户移交: everything one person owns moved to receivers in one step, recorded item by item."""

    from_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="handovers_out")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    end_memberships = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)

    objects = RestrictedManager()
    scope_path = "handover"

    class Meta:
        verbose_name = _("handover")
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.from_user} · {self.created_at:%Y-%m-%d}"


class HandoverItem(models.Model):
    """One thing handed over: a merchant, lead or task, from whom to whom."""

    handover = models.ForeignKey(Handover, on_delete=models.CASCADE, related_name="items")
    merchant = models.ForeignKey("crm.Merchant", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    lead = models.ForeignKey("crm.Lead", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    to_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    class Meta:
        verbose_name = _("handover item")

    def __str__(self):
        return f"{self.merchant or self.lead or self.task} -> {self.to_user}"
