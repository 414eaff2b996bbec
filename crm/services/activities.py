"""Logging touches (visits with GPS check-in, calls, events), checking out of a visit, and the
follow-up task an activity's next step becomes."""

from __future__ import annotations

import datetime
import uuid

from django.conf import settings
from django.contrib.gis.db.models import PointField
from django.contrib.gis.db.models.functions import Distance
from django.contrib.gis.geos import Point
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.choices import ActivityKind, CheckinFlag, TaskStatus
from crm.models import Activity, EventAttendance, Lead, Merchant, Person, Task
from crm.services.leads import CLOCK_SKEW, lead_advance_stage
from grids.models import Grid

#: Errors of the stage move, renamed to the activity's own fields.
_ADVANCE_FIELDS = {"to_stage": "advance_to", "activity": "advance_lead", "at": "occurred_at"}


def checkin_distance_m(*, merchant: Merchant, point: Point) -> float:
    """Metres between ``point`` and the merchant's location, computed by PostGIS on geography
    (on the spheroid), so the figure is true metres whatever the latitude."""
    as_geography = Cast("location", PointField(srid=4326, geography=True))
    return (
        Merchant.objects.filter(pk=merchant.pk)
        .annotate(d=Distance(as_geography, Point(point.x, point.y, srid=4326)))
        .values_list("d", flat=True)
        .get()
        .m
    )


def checkin_flag(*, distance_m: float, accuracy_m: float | None) -> str:
    """too_far beyond CHECKIN_RADIUS_M; else poor_accuracy when the device's accuracy is worse than
    CHECKIN_MAX_ACCURACY_M (or unknown); else ok."""
    if distance_m > settings.CHECKIN_RADIUS_M:
        return CheckinFlag.TOO_FAR
    if accuracy_m is None or accuracy_m > settings.CHECKIN_MAX_ACCURACY_M:
        return CheckinFlag.POOR_ACCURACY
    return CheckinFlag.OK


def _not_in_future(name: str, value: datetime.datetime | None, now: datetime.datetime) -> None:
    if value is not None and value > now + CLOCK_SKEW:
        raise ValidationError({name: [_("This time is in the future.")]})


def _split_attendees(attendees) -> tuple[list[Merchant], list[Person]]:
    merchants, persons = [], []
    for item in dict.fromkeys(attendees or ()):  # once each, in order
        if isinstance(item, Merchant):
            merchants.append(item)
        elif isinstance(item, Person):
            persons.append(item)
        else:
            raise ValidationError({"attendees": [_("An attendee is a merchant or a person.")]})
    return merchants, persons


def _check_attendees(*, by, merchants: list[Merchant], persons: list[Person]) -> None:
    merchant_ids = {m.pk for m in merchants}
    person_ids = {p.pk for p in persons}
    if not merchant_ids and not person_ids:
        raise ValidationError({"attendees": [_("An event needs at least one attendee.")]})
    seen_m = set(Merchant.objects.restrict(by, "view").filter(pk__in=merchant_ids).values_list("pk", flat=True))
    seen_p = set(Person.objects.restrict(by, "view").filter(pk__in=person_ids).values_list("pk", flat=True))
    if seen_m != merchant_ids or seen_p != person_ids:
        raise ValidationError({"attendees": [_("Some attendees are not merchants or people you can see.")]})


def activity_log(
    *,
    by,
    kind: str,
    merchant: Merchant | None = None,
    grid: Grid | None = None,
    occurred_at: datetime.datetime | None = None,
    notes: str = "",
    outcome: str = "",
    intent: str = "",
    next_step: str = "",
    next_due_at: datetime.datetime | None = None,
    checkin: Point | None = None,
    checkin_accuracy_m: float | None = None,
    checkout_at: datetime.datetime | None = None,
    title: str = "",
    event_type: str = "",
    attendees=(),
    advance_lead: Lead | None = None,
    advance_to: str | None = None,
    client_uuid: uuid.UUID | None = None,
    device_time: datetime.datetime | None = None,
) -> Activity:
    """Record a visit, call or event, in one transaction with what follows from it.

    * A visit or call concerns one merchant ``by`` may change; an event belongs to a grid in
      ``by``'s scope and lists its attendees (merchants and people ``by`` can see).
    * A visit's check-in: the distance to the merchant is computed in the database (metres, on
      geography) and flagged (too far / poor accuracy / ok); ``checkout_at`` gives the duration.
    * ``next_step`` with ``next_due_at`` becomes a Task for the merchant's owner (else ``by``).
    * ``advance_lead`` (a lead of the merchant, or of an attending merchant): its intent is set
      from ``intent``, and with ``advance_to`` it moves through lead_advance_stage, linked to this
      activity. If the move is illegal nothing at all is written."""
    now = timezone.now()
    occurred_at = occurred_at or now
    _not_in_future("occurred_at", occurred_at, now)
    if kind not in ActivityKind.values:
        raise ValidationError({"kind": [_("Unknown kind of activity.")]})
    attendee_merchants, attendee_persons = _split_attendees(attendees)

    if kind == ActivityKind.EVENT:
        if merchant is not None:
            raise ValidationError({"merchant": [_("An event has attendees, not a merchant.")]})
        if grid is None:
            raise ValidationError({"grid": [_("An event needs a grid.")]})
        if not title:
            raise ValidationError({"title": [_("An event needs a title.")]})
        if not Grid.objects.restrict(by, "change").filter(pk=grid.pk).exists():
            raise ValidationError({"grid": [_("This grid is outside the grids you may work in.")]})
        _check_attendees(by=by, merchants=attendee_merchants, persons=attendee_persons)
    else:
        if merchant is None:
            raise ValidationError({"merchant": [_("A visit or call needs a merchant.")]})
        if attendee_merchants or attendee_persons:
            raise ValidationError({"attendees": [_("Only an event has attendees.")]})
        if event_type:
            raise ValidationError({"event_type": [_("Only an event has an event type.")]})
        merchant = Merchant.objects.restrict(by, "change").filter(pk=merchant.pk).select_related("owner").first()
        if merchant is None:
            raise ValidationError({"merchant": [_("You may not work on this merchant.")]})
        if merchant.grid_id is None:
            raise ValidationError({"merchant": [_("The merchant lies in no grid.")]})

    if kind != ActivityKind.VISIT and (checkin is not None or checkin_accuracy_m is not None or checkout_at):
        raise ValidationError({"checkin": [_("Only a visit has a check-in.")]})
    if checkin_accuracy_m is not None:
        if checkin is None:
            raise ValidationError({"checkin_accuracy_m": [_("An accuracy needs a check-in position.")]})
        if not (0 <= checkin_accuracy_m < 1e7):
            raise ValidationError({"checkin_accuracy_m": [_("The accuracy is a distance in metres.")]})
    if checkout_at is not None and checkout_at < occurred_at:
        raise ValidationError({"checkout_at": [_("Check-out cannot be before check-in.")]})
    _not_in_future("checkout_at", checkout_at, now)
    if next_due_at is not None and not next_step:
        raise ValidationError({"next_step": [_("A due date needs a next step.")]})
    if next_due_at is not None and next_due_at < occurred_at:
        raise ValidationError({"next_due_at": [_("The next step cannot be due before the activity.")]})
    if advance_to and advance_lead is None:
        raise ValidationError({"advance_lead": [_("Say which lead to move.")]})

    activity = Activity(
        kind=kind,
        merchant=merchant,
        grid_id=merchant.grid_id if merchant is not None else grid.pk,
        by=by,
        occurred_at=occurred_at,
        title=title or "",
        event_type=event_type or "",
        notes=notes or "",
        outcome=outcome or "",
        intent=intent or "",
        next_step=next_step or "",
        checkout_at=checkout_at,
        client_uuid=client_uuid,
        device_time=device_time,
    )
    if checkin is not None:
        distance = checkin_distance_m(merchant=merchant, point=checkin)
        activity.checkin_location = Point(checkin.x, checkin.y, srid=4326)
        activity.checkin_accuracy_m = checkin_accuracy_m
        activity.checkin_distance_m = distance
        activity.checkin_flag = checkin_flag(distance_m=distance, accuracy_m=checkin_accuracy_m)

    with transaction.atomic():
        activity.full_clean(exclude=["merchant", "grid", "by"])
        activity.save()
        EventAttendance.objects.bulk_create(
            [EventAttendance(activity=activity, merchant=m) for m in attendee_merchants]
            + [EventAttendance(activity=activity, person=p) for p in attendee_persons]
        )
        if advance_lead is not None:
            _advance_with(activity=activity, lead=advance_lead, to_stage=advance_to, intent=intent, by=by)
        if next_step and next_due_at is not None:
            owner = (merchant.owner if merchant is not None and merchant.owner_id else None) or by
            Task.objects.create(
                owner=owner,
                merchant=merchant,
                activity=activity,
                lead=advance_lead,
                title=next_step,
                due_at=next_due_at,
            )
        # The merchant may have moved between the check above and this write.
        if not Activity.objects.restrict(by, "add").filter(pk=activity.pk).exists():
            raise ValidationError({"merchant": [_("You may not work on this merchant.")]})
    return activity


def _advance_with(*, activity: Activity, lead: Lead, to_stage: str | None, intent: str, by) -> None:
    merchant_ids = (
        {activity.merchant_id}
        if activity.merchant_id
        else set(activity.attendance.exclude(merchant=None).values_list("merchant_id", flat=True))
    )
    if lead.merchant_id not in merchant_ids:
        raise ValidationError({"advance_lead": [_("The lead is not about this activity's merchant.")]})
    if not Lead.objects.restrict(by, "change").filter(pk=lead.pk).exists():
        raise ValidationError({"advance_lead": [_("You may not change this lead.")]})
    if to_stage:
        try:
            lead_advance_stage(lead=lead, to_stage=to_stage, by=by, activity=activity, at=activity.occurred_at)
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                raise
            raise ValidationError({_ADVANCE_FIELDS.get(k, k): v for k, v in exc.error_dict.items()}) from None
    if intent and lead.intent != intent:
        Lead.objects.filter(pk=lead.pk).update(intent=intent)
        lead.intent = intent


def activity_checkout(*, activity: Activity, by, at: datetime.datetime | None = None) -> Activity:
    """Check out of a visit: sets ``checkout_at`` (not before the check-in, once only)."""
    now = timezone.now()
    at = at or now
    _not_in_future("at", at, now)
    with transaction.atomic():
        locked = Activity.objects.restrict(by, "change").select_for_update(of=("self",)).filter(pk=activity.pk).first()
        if locked is None:
            raise PermissionDenied(_("You may not change this activity."))
        if locked.kind != ActivityKind.VISIT:
            raise ValidationError({"at": [_("Only a visit is checked out of.")]})
        if locked.checkout_at is not None:
            raise ValidationError({"at": [_("This visit is already checked out.")]})
        if at < locked.occurred_at:
            raise ValidationError({"at": [_("Check-out cannot be before check-in.")]})
        locked.checkout_at = at
        locked.save(update_fields=["checkout_at"])
    activity.checkout_at = at
    return locked


def task_complete(*, task: Task, by, at: datetime.datetime | None = None) -> Task:
    """Mark an open follow-up done."""
    at = at or timezone.now()
    with transaction.atomic():
        locked = Task.objects.restrict(by, "change").select_for_update(of=("self",)).filter(pk=task.pk).first()
        if locked is None:
            raise PermissionDenied(_("You may not change this task."))
        if locked.status != TaskStatus.OPEN:
            raise ValidationError({"status": [_("Only an open task can be completed.")]})
        locked.status = TaskStatus.DONE
        locked.done_at = at
        locked.save(update_fields=["status", "done_at"])
    task.status, task.done_at = locked.status, locked.done_at
    return locked
