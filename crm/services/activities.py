"""Logging touches (visits with GPS check-in, calls, events), checking out of a visit, and the
follow-up task an activity's next step becomes."""

from __future__ import annotations

import datetime
import json
import math
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.gis.db.models import PointField
from django.contrib.gis.db.models.functions import Distance
from django.contrib.gis.geos import Point
from django.core.exceptions import EmptyResultSet, FullResultSet, PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.choices import ActivityKind, CheckinFlag, TaskStatus
from crm.models import Activity, EventAttendance, Lead, Merchant, Person, Task
from crm.services.leads import CLOCK_SKEW, lead_advance_stage
from grids.models import Grid
from grids.scoping import resolve_scope, scope_q

#: ActivityKind.values is rebuilt on every access.
_KINDS = frozenset(ActivityKind.values)

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


# -- The rules of a log entry, shared by activity_log and activity_log_many (never two copies) ----
# Each raises ValidationError naming the field. None of them queries the database: the bulk path
# runs them per item in Python, then checks scope for the whole batch at once.


def _check_start(*, kind: str, occurred_at: datetime.datetime, now: datetime.datetime) -> None:
    _not_in_future("occurred_at", occurred_at, now)
    if kind not in _KINDS:
        raise ValidationError({"kind": [_("Unknown kind of activity.")]})


def _check_touch(*, merchant, attendees: bool, event_type: str) -> None:
    """A visit or call (before its scope is checked)."""
    if merchant is None:
        raise ValidationError({"merchant": [_("A visit or call needs a merchant.")]})
    if attendees:
        raise ValidationError({"attendees": [_("Only an event has attendees.")]})
    if event_type:
        raise ValidationError({"event_type": [_("Only an event has an event type.")]})


def _check_in_a_grid(grid_id: int | None) -> None:
    if grid_id is None:
        raise ValidationError({"merchant": [_("The merchant lies in no grid.")]})


def _check_details(
    *,
    kind: str,
    occurred_at: datetime.datetime,
    now: datetime.datetime,
    checkin,
    checkin_accuracy_m,
    checkout_at,
    next_step: str,
    next_due_at,
    advance_lead,
    advance_to,
    checkin_xy: tuple[float, float] | None = None,
) -> None:
    """Check-in, check-out, next step and lead move (after the merchant or grid is known).
    ``checkin_xy``: the check-in's (lon, lat), read once by the caller (each GEOS read costs)."""
    if kind != ActivityKind.VISIT and (checkin is not None or checkin_accuracy_m is not None or checkout_at):
        raise ValidationError({"checkin": [_("Only a visit has a check-in.")]})
    if checkin_xy is not None and not all(math.isfinite(c) for c in checkin_xy):
        raise ValidationError({"checkin": [_("This is not a position.")]})
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
    _check_start(kind=kind, occurred_at=occurred_at, now=now)
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
        _check_touch(merchant=merchant, attendees=attendee_merchants or attendee_persons, event_type=event_type)
        merchant = Merchant.objects.restrict(by, "change").filter(pk=merchant.pk).select_related("owner").first()
        if merchant is None:
            raise ValidationError({"merchant": [_("You may not work on this merchant.")]})
        _check_in_a_grid(merchant.grid_id)

    _check_details(
        kind=kind,
        occurred_at=occurred_at,
        now=now,
        checkin=checkin,
        checkin_accuracy_m=checkin_accuracy_m,
        checkout_at=checkout_at,
        next_step=next_step,
        next_due_at=next_due_at,
        advance_lead=advance_lead,
        advance_to=advance_to,
        checkin_xy=checkin.coords[:2] if checkin is not None else None,
    )

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


# -- Many visits and calls at once (offline sync) ----------------------------------------------------

CREATED, DUPLICATE, REJECTED = "created", "duplicate", "rejected"


@dataclass
class LogResult:
    """What became of one item of ``activity_log_many``: ``created`` (``id`` of the new row),
    ``duplicate`` (its client UUID was already stored by the same user: ``id`` of that row) or
    ``rejected`` (``error``, the ValidationError activity_log would have raised). ``row``: the
    values a bulk-created row was written with (``checkin_distance_m``, ``checkin_flag`` and
    ``received_at`` included); ``activity`` builds the Activity on first use (most callers need
    only the values: an instance per row cost as much as its share of the INSERT)."""

    status: str
    id: int | None = None
    error: ValidationError | None = None
    row: dict | None = None
    instance: Activity | None = None

    @property
    def activity(self) -> Activity | None:
        if self.instance is None and self.id is not None:
            if self.row is not None:
                self.instance = _saved_activity(self.row, self.id)
            else:
                self.instance = Activity.objects.get(pk=self.id)
        return self.instance


#: Fields of activity_log an item of activity_log_many may carry.
_MANY_FIELDS = frozenset(
    {
        "kind",
        "merchant",
        "occurred_at",
        "notes",
        "outcome",
        "intent",
        "next_step",
        "next_due_at",
        "checkin",
        "checkin_accuracy_m",
        "checkout_at",
        "title",
        "event_type",
        "attendees",
        "grid",
        "advance_lead",
        "advance_to",
        "client_uuid",
        "device_time",
    }
)

#: merchant_scope_condition() per scope: the SQL is a function of the scope alone (grid members get
#: their grid ids as literals, wider scopes a sub-select on grids), and compiling it from the ORM
#: cost more than running it.
_SCOPE_SQL: dict = {}


def merchant_scope_condition(by) -> tuple[str, list] | None:
    """``restrict(by, "change")`` on merchants as a SQL condition on the table ``crm_merchant``
    (not aliased) and its parameters, compiled from the same Q; None when ``by`` may change no
    merchant. Resolved with resolve_scope(), so a ``scope_grant()`` applies. A condition rather
    than a sub-select: the planner then checks it on the merchant row it reads anyway."""
    if not getattr(by, "is_authenticated", False):
        return None
    scope = resolve_scope(by, "change")
    found = _SCOPE_SQL.get(scope)
    if found is None:
        q = scope_q(Merchant, by, "change", scope=scope)
        query = (Merchant.objects.filter(q) if q is not None else Merchant.objects.all()).order_by().query
        compiler = query.get_compiler(using=Merchant.objects.db)
        table = Merchant._meta.db_table
        try:
            if any(query.alias_refcount[alias] for alias in query.alias_map if alias != table):
                # A rule through joins (not the merchants' own columns): as a sub-select.
                inner, params = Merchant.objects.filter(q).order_by().values("pk").query.sql_with_params()
                sql = f'"{table}"."id" IN ({inner})'
            else:
                sql, params = compiler.compile(query.where)
        except EmptyResultSet:  # no scope (a leaver): nothing to ask the database
            found = (None, ())
        except FullResultSet:  # everything (a superuser)
            found = ("TRUE", ())
        else:
            found = (f"({sql})", tuple(params))
        if len(_SCOPE_SQL) > 1000:
            _SCOPE_SQL.clear()
        _SCOPE_SQL[scope] = found
    return None if found[0] is None else (found[0], list(found[1]))


def merchants_in_scope_sql(by, condition: tuple[str, list] | None = None) -> tuple[str, list] | None:
    """SQL selecting ``id, grid_id, owner_id`` of the merchants ``by`` may change (restrict(by,
    "change"); ``condition``: merchant_scope_condition(by) when the caller has it) among the ids
    given as its last parameter (a list), and its other parameters; None when ``by`` may change no
    merchant."""
    condition = condition or merchant_scope_condition(by)
    if condition is None:
        return None
    table = Merchant._meta.db_table
    return f"SELECT id, grid_id, owner_id FROM {table} WHERE {condition[0]} AND id = ANY(%s::bigint[])", condition[1]


# The rows of a batch, the merchant's distance and the check-in flag computed in the same statement,
# the scope re-checked on the merchant as it is at the insert (activity_log re-checks after its
# write for the same reason), a UUID already stored left alone. {scope}: merchant_scope_condition().
_INSERT_MANY = """
INSERT INTO crm_activity (kind, merchant_id, grid_id, by_id, occurred_at, title, event_type, notes, outcome,
                          intent, next_step, checkin_location, checkin_accuracy_m, checkin_distance_m,
                          checkin_flag, checkout_at, client_uuid, device_time, received_at)
SELECT i.kind, crm_merchant.id, crm_merchant.grid_id, %s, i.at, '', '', i.notes, i.outcome, i.intent, i.next_step,
       i.pt, i.acc, d.metres,
       CASE WHEN i.pt IS NULL THEN ''
            WHEN d.metres > %s THEN 'too_far'
            WHEN i.acc IS NULL OR i.acc > %s THEN 'poor_accuracy'
            ELSE 'ok' END,
       i.checkout, i.u, i.device_time, %s
FROM (
    SELECT u.*, CASE WHEN u.lon IS NULL THEN NULL ELSE ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326) END AS pt
    FROM json_to_recordset(%s::json)
         AS u(n int, u uuid, kind text, mid bigint, at timestamptz, notes text, outcome text, intent text,
              next_step text, lon float8, lat float8, acc float8, checkout timestamptz, device_time timestamptz)
) i
JOIN crm_merchant ON crm_merchant.id = i.mid AND crm_merchant.grid_id IS NOT NULL AND {scope}
CROSS JOIN LATERAL (
    SELECT ST_Distance(crm_merchant.location::geography, i.pt::geography) AS metres
) d
ORDER BY i.n
ON CONFLICT (client_uuid) DO NOTHING
RETURNING id, client_uuid, checkin_distance_m, checkin_flag
"""


def activity_log_many(*, by, items: list[dict], scoped: dict | None = None) -> list[LogResult]:
    """Log many visits and calls of ``by`` at once (an offline outbox), each item answered on its own
    (a list of LogResult, in the order of ``items``), with the rules of ``activity_log``.

    Each item holds ``activity_log``'s keyword arguments and must carry a ``client_uuid`` (the
    idempotency key); ``merchant`` may be an id, ``checkin`` a ``(lon, lat)`` tuple in WGS 84.
    The same checks run (shared functions, in the same order, so a rejected item gets the error
    activity_log would give), but set-based: the items are validated in Python without a query
    each; the merchants' scope is read in one query; every valid row is written by one
    ``INSERT … SELECT … FROM json_to_recordset(…) ON CONFLICT (client_uuid) DO NOTHING RETURNING``
    that computes the check-in distance (geography, as ``checkin_distance_m``) and flag (same
    settings as ``checkin_flag``) and re-checks the scope on the merchant as it stands then; a
    UUID already stored is looked up in one query (``by``'s own: duplicate; someone else's:
    rejected); the follow-up tasks are one bulk insert. Rare items go through ``activity_log``
    itself, one by one, each in its savepoint: a lead to advance, an event, a title.
    A created row comes back as a loaded Activity whose ``checkin_location`` is deferred.

    Scope is ``restrict(by, "change")`` as resolve_scope() answers it, so a caller's
    ``grids.scoping.scope_grant()`` applies here as it does to activity_log. Run inside the
    caller's transaction (one is opened if there is none).

    ``scoped``: what the caller already read, in this transaction and with the same scope, from
    ``merchants_in_scope_sql(by)`` for the merchants the items name: ``{merchant id: (grid_id,
    owner_id)}``, ``None`` for an id read and found out of scope. Those are not read again (an id
    it does not cover is); the INSERT re-checks the scope on every row all the same."""
    # No savepoint of its own (two statements): nothing in it fails on an item's account; a
    # database error fails the caller's transaction, which is what the caller's savepoint is for.
    with transaction.atomic(savepoint=False):
        return _log_many(by=by, items=items, given=scoped)


def _log_many(*, by, items: list[dict], given: dict | None = None) -> list[LogResult]:
    now = timezone.now()
    results: list[LogResult | None] = [None] * len(items)
    first: dict[uuid.UUID, int] = {}
    again: list[int] = []  # a UUID repeated in the batch: answered after its first occurrence
    bulk: list[tuple[int, dict, tuple | None]] = []  # (n, the row's values, check-in (lon, lat))
    one_by_one: list[int] = []  # a lead to advance, an event, a title: activity_log itself
    for n, item in enumerate(items):
        unknown = set(item) - _MANY_FIELDS
        if unknown or item.get("client_uuid") is None:
            raise TypeError(f"activity_log_many: every item needs a client_uuid; unknown keys {sorted(unknown)}")
        cu = item["client_uuid"]
        if cu in first:
            again.append(n)
            continue
        first[cu] = n
        kind = item.get("kind")
        if (
            kind == ActivityKind.EVENT
            or item.get("advance_lead") is not None
            or item.get("advance_to")
            or item.get("title")
            or item.get("attendees")
        ):
            one_by_one.append(n)
    one_by_one_set = set(one_by_one)

    # Scope of every merchant named, in one query.
    def merchant_id(item):
        m = item.get("merchant")
        return m.pk if isinstance(m, Merchant) else m

    # restrict(by, "change"), resolved once for both statements that apply it (compiled once per
    # scope): what the caller read already is not asked again.
    wanted = {merchant_id(items[n]) for n in first.values() if n not in one_by_one_set} - {None}
    scope = merchant_scope_condition(by) if wanted else None
    scoped = {}
    if given:
        scoped = {pk: found for pk, found in given.items() if found is not None and pk in wanted}
        wanted = {pk for pk in wanted if pk not in given}
    ids = [pk for pk in wanted if type(pk) is int]
    if ids and scope is not None:
        sql, params = merchants_in_scope_sql(by, scope)
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, ids])
            scoped.update((pk, (grid_id, owner_id)) for pk, grid_id, owner_id in cursor.fetchall())

    # The rules, per item, in Python.
    for n in first.values():
        if n in one_by_one_set:
            continue
        item = items[n]
        try:
            row, lon_lat = _validated_row(by=by, item=item, scoped=scoped, merchant_id=merchant_id(item), now=now)
        except ValidationError as exc:
            results[n] = LogResult(REJECTED, error=exc)
        else:
            bulk.append((n, row, lon_lat))

    created = _insert_many(by=by, rows=bulk, scope=scope, now=now)
    for n, row, _xy in bulk:
        if row["client_uuid"] in created:
            pk, distance, flag = created[row["client_uuid"]]
            row["checkin_distance_m"], row["checkin_flag"], row["received_at"] = distance, flag, now
            results[n] = LogResult(CREATED, id=pk, row=row)

    # Not written: stored before (duplicate or someone else's), or the merchant left the scope.
    # The items logged one by one are looked up in the same query.
    missing = {row["client_uuid"] for n, row, _xy in bulk if results[n] is None}
    missing |= {items[n]["client_uuid"] for n in one_by_one}
    stored = {}
    if missing:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT client_uuid, id, by_id FROM {Activity._meta.db_table} WHERE client_uuid = ANY(%s::uuid[])",
                [[str(cu) for cu in missing]],
            )
            stored = {cu: (pk, by_id) for cu, pk, by_id in cursor.fetchall()}
    for n, row, _xy in bulk:
        if results[n] is None:
            results[n] = _stored_result(stored.get(row["client_uuid"]), by) or LogResult(
                REJECTED, error=ValidationError({"merchant": [_("You may not work on this merchant.")]})
            )

    # Follow-up tasks of the new rows, in one insert (the owner: the merchant's, else ``by``).
    tasks = [
        Task(
            owner_id=scoped[row["merchant_id"]][1] or by.pk,
            merchant_id=row["merchant_id"],
            activity_id=results[n].id,
            title=row["next_step"],
            due_at=items[n]["next_due_at"],
        )
        for n, row, _xy in bulk
        if results[n].status == CREATED and row["next_step"] and items[n].get("next_due_at") is not None
    ]
    if tasks:
        Task.objects.bulk_create(tasks)

    # The rare ones (a lead to advance, an event): activity_log itself, each in its savepoint.
    for n in one_by_one:
        item = items[n]
        found = _stored_result(stored.get(item["client_uuid"]), by)
        if found is not None:
            results[n] = found
            continue
        if isinstance(item.get("merchant"), int):
            item = {**item, "merchant": Merchant(pk=item["merchant"])}  # activity_log reads it itself
        if isinstance(item.get("checkin"), tuple):
            item = {**item, "checkin": Point(*item["checkin"], srid=4326)}
        try:
            activity = activity_log(by=by, **item)
            results[n] = LogResult(CREATED, id=activity.pk, instance=activity)
        except ValidationError as exc:
            results[n] = LogResult(REJECTED, error=exc)
        except IntegrityError:
            # Stored by another transaction meanwhile (activity_log's savepoint is rolled back).
            row = Activity.objects.filter(client_uuid=item["client_uuid"]).values_list("pk", "by_id").first()
            if row is None:
                raise
            results[n] = _stored_result(row, by)

    # A UUID sent twice: after its first occurrence is stored, a duplicate of it; if that one was
    # rejected, the later one is judged on its own (as if sent in a batch of its own, after).
    if again:
        retry = []
        for n in again:
            first_result = results[first[items[n]["client_uuid"]]]
            if first_result.status in (CREATED, DUPLICATE):
                results[n] = LogResult(DUPLICATE, id=first_result.id)
            else:
                retry.append(n)
        if retry:
            for n, result in zip(retry, _log_many(by=by, items=[items[n] for n in retry]), strict=True):
                results[n] = result
    return results


def _stored_result(found: tuple[int, int] | None, by) -> LogResult | None:
    if found is None:
        return None
    pk, by_id = found
    if by_id != by.pk:
        return LogResult(REJECTED, error=ValidationError({"client_uuid": [_("This id is already used.")]}))
    return LogResult(DUPLICATE, id=pk)


def _validated_row(*, by, item: dict, scoped: dict, merchant_id, now) -> tuple[dict, tuple | None]:
    """activity_log's checks for one visit or call, without a query (scope from ``scoped``):
    the row's column values, and the check-in's (lon, lat)."""
    kind = item.get("kind")
    occurred_at = item.get("occurred_at") or now
    _check_start(kind=kind, occurred_at=occurred_at, now=now)
    _check_touch(merchant=merchant_id, attendees=bool(item.get("attendees")), event_type=item.get("event_type", ""))
    if merchant_id not in scoped:
        raise ValidationError({"merchant": [_("You may not work on this merchant.")]})
    grid_id, _owner_id = scoped[merchant_id]
    _check_in_a_grid(grid_id)
    checkin, accuracy = item.get("checkin"), item.get("checkin_accuracy_m")
    lon_lat = None
    if checkin is not None:
        lon_lat = (float(checkin[0]), float(checkin[1])) if isinstance(checkin, tuple) else checkin.coords[:2]
    _check_details(
        kind=kind,
        occurred_at=occurred_at,
        now=now,
        checkin=checkin,
        checkin_accuracy_m=accuracy,
        checkout_at=item.get("checkout_at"),
        next_step=item.get("next_step", ""),
        next_due_at=item.get("next_due_at"),
        advance_lead=None,
        advance_to=None,
        checkin_xy=lon_lat,
    )
    row = {
        "kind": kind,
        "merchant_id": merchant_id,
        "grid_id": grid_id,
        "by_id": by.pk,
        "occurred_at": occurred_at,
        "title": "",
        "event_type": "",
        "notes": item.get("notes") or "",
        "outcome": item.get("outcome") or "",
        "intent": item.get("intent") or "",
        "next_step": item.get("next_step") or "",
        "checkin_accuracy_m": accuracy if checkin is not None else None,
        "checkin_distance_m": None,
        "checkin_flag": "",
        "checkout_at": item.get("checkout_at"),
        "client_uuid": item["client_uuid"],
        "device_time": item.get("device_time"),
    }
    _clean_fields(row)
    return row, lon_lat


_CLEANED: list | None = None


def _fast_check(f):
    """For a field whose clean() would plainly return a value of the right type unchanged, a cheap
    test of that value (a choice, a string within max_length, a datetime, a float); None when the
    field has more to it. A value the test refuses still goes through clean(), for its error."""
    from django.core.validators import MaxLengthValidator
    from django.db import models

    validators = f.validators
    if isinstance(f, models.CharField) and all(isinstance(v, MaxLengthValidator) for v in validators):
        limit = f.max_length or 0
        if f.choices:
            allowed = {str(key) for key, _label in f.flatchoices}
            return lambda v: type(v) is str and v in allowed and len(v) <= limit
        return lambda v: type(v) is str and len(v) <= limit and (f.blank or v != "")
    if validators:
        return None
    if isinstance(f, models.TextField) and not f.choices:
        return lambda v: type(v) is str and (f.blank or v != "")
    if isinstance(f, models.DateTimeField) and not f.choices:
        return lambda v: isinstance(v, datetime.datetime)
    if isinstance(f, models.FloatField) and not f.choices:
        return lambda v: type(v) is float
    return None


def _clean_fields(row: dict) -> None:
    """``Model.clean_fields()`` of full_clean() (choices, lengths, types) on a row's values, without
    building the instance; its uniqueness and constraint checks (a query each) are the INSERT's ON
    CONFLICT and the rules above. Keys, relations and the point (rebuilt by the INSERT) excluded.
    Values that plainly pass are let through without the validator machinery (``_fast_check``)."""
    global _CLEANED
    if _CLEANED is None:
        skip = {"id", "merchant", "grid", "by", "client_uuid", "received_at", "checkin_location", "checkin_distance_m"}
        _CLEANED = [(f, _fast_check(f)) for f in Activity._meta.concrete_fields if f.name not in skip]
    errors = {}
    for f, fast in _CLEANED:
        raw = row[f.attname]
        if f.blank and raw in f.empty_values:
            continue
        if fast is not None and fast(raw):
            continue
        try:
            row[f.attname] = f.clean(raw, None)
        except ValidationError as e:
            errors[f.name] = e.error_list
    if errors:
        raise ValidationError(errors)


_ATTNAMES: list[str] | None = None


def _saved_activity(row: dict, pk: int) -> Activity:
    """The Activity the INSERT wrote, built as a loaded row (the cheap way), the check-in position
    deferred (read from the database if asked for: not building it saves GEOS calls per row)."""
    global _ATTNAMES
    if _ATTNAMES is None:
        _ATTNAMES = [f.attname for f in Activity._meta.concrete_fields if f.attname != "checkin_location"]
    values = {**row, "id": pk}
    return Activity.from_db(connection.alias, _ATTNAMES, [values[name] for name in _ATTNAMES])


def _insert_many(*, by, rows: list, scope: tuple[str, list] | None, now) -> dict[uuid.UUID, tuple[int, float, str]]:
    """One INSERT of ``rows`` ((n, values, (lon, lat))); {client_uuid: (id, distance, flag)} written.
    ``scope``: ``merchant_scope_condition(by)``, re-applied inside the statement."""
    if not rows or scope is None:
        return {}
    scope_sql, scope_params = scope
    # One JSON document rather than an array per column: psycopg adapts 14 lists of 100 values
    # (timestamps, UUIDs) slower than json.dumps writes them all.
    iso = lambda value: value.isoformat() if value is not None else None  # noqa: E731
    document = json.dumps(
        [
            {
                "n": n,
                "u": str(row["client_uuid"]),
                "kind": row["kind"],
                "mid": row["merchant_id"],
                "at": row["occurred_at"].isoformat(),
                "notes": row["notes"],
                "outcome": row["outcome"],
                "intent": row["intent"],
                "next_step": row["next_step"],
                "lon": lon_lat[0] if lon_lat is not None else None,
                "lat": lon_lat[1] if lon_lat is not None else None,
                "acc": row["checkin_accuracy_m"],
                "checkout": iso(row["checkout_at"]),
                "device_time": iso(row["device_time"]),
            }
            for n, row, lon_lat in rows
        ],
        ensure_ascii=False,
        allow_nan=False,
    )
    params = [by.pk, settings.CHECKIN_RADIUS_M, settings.CHECKIN_MAX_ACCURACY_M, now, document, *scope_params]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_MANY.format(scope=scope_sql), params)
        return {cu: (pk, distance, flag) for pk, cu, distance, flag in cursor.fetchall()}
