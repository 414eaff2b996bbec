"""Touches: visits (with GPS check-in), calls and events, and their photos."""

import pghistory
from django.conf import settings
from django.contrib.gis.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.choices import ActivityKind, CheckinFlag, EventType, Intent, Outcome, PhotoKind
from grids.scoping import RestrictedManager


@pghistory.track()
class Activity(models.Model):
    """走访 / 电话 / 活动. A visit or call concerns one merchant; an event belongs to a grid and lists
    its attendees. ``grid`` is the merchant's grid when logged (activity-volume reports); who may see
    an activity follows the merchant's *current* grid, so history moves with the merchant."""

    kind = models.CharField(_("kind"), max_length=6, choices=ActivityKind.choices)
    merchant = models.ForeignKey(
        "crm.Merchant", on_delete=models.CASCADE, null=True, blank=True, related_name="activities"
    )
    grid = models.ForeignKey("grids.Grid", on_delete=models.PROTECT, related_name="activities")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="activities")
    occurred_at = models.DateTimeField(_("when"))
    title = models.CharField(_("title"), max_length=100, blank=True)
    event_type = models.CharField(_("event type"), max_length=15, choices=EventType.choices, blank=True)
    notes = models.TextField(_("notes"), blank=True)
    outcome = models.CharField(_("outcome"), max_length=15, choices=Outcome.choices, blank=True)
    intent = models.CharField(_("intent"), max_length=6, choices=Intent.choices, blank=True)
    next_step = models.CharField(_("next step"), max_length=200, blank=True)
    # Check-in (visits): the device position and accuracy; distance computed in the database.
    checkin_location = models.PointField(_("check-in position"), srid=4326, null=True, blank=True, spatial_index=False)
    checkin_accuracy_m = models.FloatField(_("position accuracy (m)"), null=True, blank=True)
    checkin_distance_m = models.FloatField(_("distance to merchant (m)"), null=True, blank=True)
    checkin_flag = models.CharField(_("check-in"), max_length=15, choices=CheckinFlag.choices, blank=True)
    checkout_at = models.DateTimeField(_("check-out"), null=True, blank=True)
    # Offline sync (issue 5): the device's id for this row and its clock.
    client_uuid = models.UUIDField(null=True, blank=True, unique=True)
    device_time = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    objects = RestrictedManager()
    scope_path = "activity"

    class Meta:
        verbose_name = _("activity")
        verbose_name_plural = _("activities")
        ordering = ["-occurred_at", "-id"]
        indexes = [
            # Last visit per merchant: LATERAL ... LIMIT 1 on this (PERFORMANCE.md).
            models.Index(fields=["merchant", "-occurred_at"], name="activity_last_visit", condition=Q(kind="visit")),
            models.Index(fields=["merchant", "-occurred_at"], name="activity_merchant_time"),
            # Activity volume per grid x period.
            models.Index(fields=["grid", "occurred_at"], name="activity_grid_time", include=["kind"]),
            # Activities received since the funnel rollup was built (crm.selectors.funnel).
            models.Index(fields=["received_at"], name="activity_received"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="event") | Q(merchant__isnull=False),
                name="activity_merchant_unless_event",
                violation_error_message=_("A visit or call needs a merchant."),
            ),
            models.CheckConstraint(
                condition=Q(checkout_at__isnull=True) | Q(checkout_at__gte=models.F("occurred_at")),
                name="activity_checkout_after_checkin",
                violation_error_message=_("Check-out cannot be before check-in."),
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} · {self.merchant or self.title}"


class EventAttendance(models.Model):
    """A merchant and/or person at an event."""

    activity = models.ForeignKey(Activity, on_delete=models.CASCADE, related_name="attendance")
    merchant = models.ForeignKey("crm.Merchant", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    person = models.ForeignKey("crm.Person", on_delete=models.CASCADE, null=True, blank=True, related_name="+")

    class Meta:
        verbose_name = _("event attendance")
        constraints = [
            models.CheckConstraint(
                condition=Q(merchant__isnull=False) | Q(person__isnull=False),
                name="attendance_has_someone",
                violation_error_message=_("An attendance names a merchant or a person."),
            )
        ]


class ActivityPhoto(models.Model):
    """A photo (门头照 ...) stored through Django's storage API, served only to users who can see
    the activity's merchant. EXIF position and time are read on upload."""

    activity = models.ForeignKey(Activity, on_delete=models.CASCADE, related_name="photos")
    kind = models.CharField(_("kind"), max_length=12, choices=PhotoKind.choices, default=PhotoKind.STOREFRONT)
    file = models.FileField(_("file"), upload_to="photos/%Y/%m/")
    content_type = models.CharField(max_length=30)
    size = models.PositiveIntegerField()
    exif_location = models.PointField(srid=4326, null=True, blank=True, spatial_index=False)
    exif_taken_at = models.DateTimeField(null=True, blank=True)
    uploaded_at = models.DateTimeField(auto_now_add=True)
    client_uuid = models.UUIDField(null=True, blank=True, unique=True)

    objects = RestrictedManager()
    scope_path = "via_merchant"
    scope_merchant_field = "activity__merchant"

    class Meta:
        verbose_name = _("photo")
