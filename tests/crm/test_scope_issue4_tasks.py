"""The generic scope checks (tests/scope_checks.py) on the reminder and handover endpoints."""

import datetime

from django.utils import timezone

from crm.models import Handover, Notification, Task
from tests.scope_checks import ScopedEndpointChecks


def _notification(user, merchant=None, title="回访"):
    # get_or_create: the checks ask for the same record more than once and count rows in between.
    task, _ = Task.objects.get_or_create(
        owner=user, merchant=merchant, title=title, defaults={"due_at": timezone.now()}
    )
    return Notification.objects.get_or_create(task=task, event="due", defaults={"user": user})[0]


class TestNotificationEndpoint(ScopedEndpointChecks):
    """Own only: am_a sees their reminders, never another person's (here am_c's)."""

    basename = "notification"

    def in_scope(self, world, merchants):
        self.out_of_scope(world, merchants)  # both exist before the checks count rows
        return _notification(world.am_a, merchants["grid_a"])

    def out_of_scope(self, world, merchants):
        return _notification(world.am_c, merchants["grid_c"])

    def make_many(self, world, n):
        for i in range(n):
            _notification(world.regional_head, title=f"提醒 {i}")

    def write_outside(self, world, merchants):
        # Marking someone else's reminder read: 404, and it stays unread.
        other = self.out_of_scope(world, merchants)
        return "post", f"{self.list_url()}{other.pk}/read/", {}

    def test_marking_someone_elses_reminder_read_changes_nothing(self, world, merchants, api_as):
        other = self.out_of_scope(world, merchants)
        assert api_as(world.am_a).post(f"{self.list_url()}{other.pk}/read/").status_code == 404
        assert api_as(world.am_a).post(f"{self.list_url()}read-all/").status_code == 200
        other.refresh_from_db()
        assert other.read_at is None


class TestHandoverEndpoint(ScopedEndpointChecks):
    """A handover is seen by whoever applied it; a grid member can hand over nobody."""

    basename = "handover"

    def in_scope(self, world, merchants):
        self.out_of_scope(world, merchants)  # both exist before the checks count rows
        return Handover.objects.get_or_create(from_user=world.former_am_a, by=world.am_a)[0]

    def out_of_scope(self, world, merchants):
        return Handover.objects.get_or_create(from_user=world.am_a, by=world.branch_manager)[0]

    def make_many(self, world, n):
        now = timezone.now()
        Handover.objects.bulk_create(
            Handover(from_user=world.am_c, by=world.regional_head, applied_at=now - datetime.timedelta(days=i))
            for i in range(n)
        )

    def write_outside(self, world, merchants):
        # am_a handing over a colleague's book to themselves: refused, nothing written.
        merchants["grid_a"].owner = world.grid_leader_a
        merchants["grid_a"].save()
        return "post", self.list_url(), {"from_user": world.grid_leader_a.pk, "to_user": world.am_a.pk}
