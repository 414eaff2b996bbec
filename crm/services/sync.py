"""Offline sync (issue 5): a tablet's outbox, received in batches, each item answered on its own.

``sync_batch()`` takes up to ``MAX_ITEMS`` items ``{client_uuid, type, device_time, payload}`` and
answers, in the same order, ``created`` / ``duplicate`` / ``rejected`` / ``conflict``:

* **Idempotent.** Every item carries the device's UUID, stored with unique constraints
  (``Activity.client_uuid``, ``MerchantSyncEdit.client_uuid``, ``ActivityPhoto.client_uuid``). The
  batch first takes a transaction-scoped advisory lock per UUID, in sorted order (so two batches
  sharing items never deadlock): the same batch posted twice at once runs one after the other and
  the second finds every row of the first ("duplicate", same id). The unique constraint stays the
  backstop: an IntegrityError rolls the item's savepoint back and the row that won is looked up
  (activities: ``ON CONFLICT (client_uuid) DO NOTHING``, then the row that is there).
* **A rejected item writes nothing and never loses the others**: merchant items each in a savepoint;
  activity items validated before the one statement that writes them (a lead move: its savepoint).
* **Reuse, no second set of rules**: activities go through ``ActivitySerializer``'s fields and
  ``activity_log_many`` (activity_log's rules, set-based: a run of activity items in a row is one
  ``INSERT … ON CONFLICT (client_uuid) DO NOTHING`` and one insert of tasks, a rejected item simply
  left out of it); merchants through ``MerchantSerializer`` and ``merchant_save``; photos through
  ``photo_attach``. Their errors come back under the payload's field names. A field's value that
  plainly passes is taken as the field would take it without running DRF's machinery per item
  (``_lean_check``); anything else runs the field itself, so every error is the serializer's own.
* **Few statements**: after the locks, one statement reads the rows already stored under the
  batch's UUIDs *and* the scope (grid, owner) of every merchant the visits name; activity_log_many
  takes that reading instead of asking again, and its INSERT re-checks the scope on each row.
* **device_time** is stored as sent (``Activity.device_time``, ``MerchantSyncEdit.device_time``);
  ``received_at`` is the server's clock. An activity's ``occurred_at`` defaults to its device_time.

Who may log a visit or call offline (the *late visit* rule)
-----------------------------------------------------------
A visit happened where it happened: a merchant reassigned while the account manager was offline
must not make their visit disappear. A visit or call on merchant M by user U is accepted when

1. M is in U's change scope now (``restrict(U, "change")``, the ordinary rule), or
2. **restrict() as it stood when the visit took place** allowed it: at T = the activity's
   ``occurred_at`` (default: its device_time), no more than ``LATE_WINDOW`` ago, M lay in grid G
   (M's history, ``crm_merchantevent``: its latest version recorded at or before T) and U held,
   as recorded at T (``grids_membershipevent``: each membership's latest version at or before T),
   a membership active on T's date (Asia/Shanghai) that may change things (not mid-office) over
   G, G's sub-branch or G's branch. A membership a handover ended "yesterday" still counts for a
   visit made before the handover: the end date was written after T.

A late visit is written exactly as any other (``activity_log_many``, with U's scope widened to
M's current grid for that call only, ``grids.scoping.scope_grant``); it follows M's *current* grid, so
the new owner sees it on M's timeline, and its follow-up task goes to M's current owner. What it
cannot do is move M's funnel (U no longer holds M's leads): ``advance_lead``/``advance_to`` are
dropped with a warning. A merchant U never had (or that does not exist) is rejected with the same
message either way, so nothing about other scopes leaks.

Edits (``merchant_update``) need the merchant in U's change scope now, and apply only when the
merchant's ``version`` still equals the ``base_version`` the device edited; otherwise the answer is
``conflict`` with the server's copy and nothing is written.
"""

from __future__ import annotations

import datetime
import functools
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from rest_framework import serializers
from rest_framework.fields import SkipField

from crm.choices import ActivityKind, PhotoKind
from crm.models import Activity, ActivityPhoto, Merchant
from crm.models.merchants import MerchantSyncEdit
from crm.selectors.working_set import merchant_rows
from crm.services.activities import LogResult, activity_log_many, merchants_in_scope_sql
from crm.services.duplicates import merchant_duplicate_candidates
from crm.services.photos import photo_attach
from grids import scoping
from grids.choices import READ_ONLY_ROLES

MAX_ITEMS = 200
#: How long after the fact a visit on a merchant that has since left the user's scope is accepted.
LATE_WINDOW = datetime.timedelta(days=getattr(settings, "SYNC_LATE_WINDOW_DAYS", 30))
#: Namespace (first key) of the advisory locks taken per client UUID.
LOCK_CLASS = 0x5359  # "SY"

CREATED, DUPLICATE, REJECTED, CONFLICT = "created", "duplicate", "rejected", "conflict"
TYPES = ("activity", "merchant_create", "merchant_update")

# Activity payload (sync name) -> ActivitySerializer field.
_ACTIVITY_FIELDS = ("kind", "occurred_at", "notes", "outcome", "intent", "next_step", "next_due_at", "checkout_at")
# The ActivitySerializer fields a sync payload feeds.
_ACTIVITY_SERIALIZER_FIELDS = frozenset(
    {*_ACTIVITY_FIELDS, "checkin", "checkin_accuracy_m", "advance_lead_id", "advance_to"}
)
# ActivitySerializer / activity_log error keys -> the sync payload's names.
_ACTIVITY_ERROR_KEYS = {
    "merchant_id": "merchant",
    "advance_lead_id": "advance_lead",
    "checkin_accuracy_m": "checkin",
    "checkin_location": "checkin",
    "grid_id": "merchant",
    "grid": "merchant",
}
# Merchant fields an offline create or edit may send (MerchantSerializer's writable fields).
_MERCHANT_FIELDS = ("name", "credit_code", "industry", "location", "address", "place", "owner", "status")


@dataclass
class SyncItem:
    client_uuid: uuid.UUID
    type: str
    device_time: datetime.datetime
    payload: dict


@dataclass
class ItemResult:
    client_uuid: uuid.UUID
    status: str
    id: int | None = None
    errors: dict | None = None
    server: dict | None = None
    warnings: dict | None = None

    def as_dict(self) -> dict:
        return {
            "client_uuid": str(self.client_uuid),
            "status": self.status,
            "id": self.id,
            "errors": self.errors,
            "server": self.server,
            "warnings": self.warnings,
        }


class _Undo(Exception):
    """Raised inside an item's savepoint to roll back whatever it wrote, carrying its answer."""

    def __init__(self, result: ItemResult):
        self.result = result


# -- Parsing the batch (a malformed batch is a 400 naming the field) ---------------------------------


def _bad(field: str, message) -> DjangoValidationError:
    return DjangoValidationError({field: [message]})


def parse_uuid(value, field: str) -> uuid.UUID:
    if not isinstance(value, str):
        raise _bad(field, _("A UUID is required."))
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _bad(field, _("This is not a valid UUID.")) from None


def parse_time(value, field: str) -> datetime.datetime:
    parsed = None
    if isinstance(value, str) and len(value) <= 40:
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
    if parsed is None:
        raise _bad(field, _("Give an ISO 8601 date and time with its offset."))
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    try:
        return parsed.astimezone(datetime.UTC)
    except (OverflowError, ValueError):
        raise _bad(field, _("Give an ISO 8601 date and time with its offset.")) from None


def parse_batch(data) -> list[SyncItem]:
    """``{"items": [...]}`` -> items. DjangoValidationError naming ``items`` or ``items[i].<key>``."""
    if not isinstance(data, dict) or "items" not in data:
        raise _bad("items", _("This field is required."))
    raw = data["items"]
    if not isinstance(raw, list):
        raise _bad("items", _("Send a list of items."))
    if not raw:
        raise _bad("items", _("The batch is empty."))
    if len(raw) > MAX_ITEMS:
        raise _bad("items", _("At most %(max)d items per batch.") % {"max": MAX_ITEMS})
    items = []
    for i, entry in enumerate(raw):
        at = f"items[{i}]"
        if not isinstance(entry, dict):
            raise _bad(at, _("Each item is an object."))
        client_uuid = parse_uuid(entry.get("client_uuid"), f"{at}.client_uuid")
        kind = entry.get("type")
        if kind not in TYPES:
            raise _bad(f"{at}.type", _("Choose one of: %(choices)s.") % {"choices": ", ".join(TYPES)})
        device_time = parse_time(entry.get("device_time"), f"{at}.device_time")
        payload = entry.get("payload")
        if not isinstance(payload, dict):
            raise _bad(f"{at}.payload", _("The payload is an object."))
        items.append(SyncItem(client_uuid, kind, device_time, payload))
    return items


# -- Helpers ----------------------------------------------------------------------------------------


def _lock_uuids(uuids) -> None:
    """Serialise concurrent work on the same client UUIDs until this transaction ends (sorted: two
    batches sharing UUIDs in another order cannot deadlock)."""
    keys = sorted({int.from_bytes(u.bytes[:4], "big", signed=True) for u in uuids})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int[]) WITH ORDINALITY AS t(k, n)",
            [LOCK_CLASS, keys],
        )


def _errors(exc) -> dict:
    """A DRF or Django validation error -> ``{field: [messages]}``."""
    if isinstance(exc, DjangoValidationError):
        exc = serializers.ValidationError(serializers.as_serializer_error(exc))
    detail = exc.detail
    if isinstance(detail, dict):
        return {key: value if isinstance(value, list | dict) else [value] for key, value in detail.items()}
    return {"non_field_errors": detail if isinstance(detail, list) else [detail]}


def _rename(errors: dict, names: dict) -> dict:
    out: dict = {}
    for key, value in errors.items():
        new = names.get(key, key)
        if new in out and isinstance(out[new], list) and isinstance(value, list):
            out[new] = out[new] + value
        else:
            out[new] = value
    return out


def _not_found() -> dict:
    # One message for "does not exist" and "not yours": nothing about other scopes leaks.
    return {"merchant": [_("Merchant not found.")]}


def _plain_position(value) -> tuple[float, float] | None:
    """The (lon, lat) of a plain GeoJSON Point that StrictGeometryField would accept as it is, read
    by the same check (core.geo), without building a GEOS geometry (a dozen ctypes calls per
    visit); None for anything else, which the field then judges (and words the error)."""
    from core.geo import _position

    if not isinstance(value, dict) or value.keys() != {"type", "coordinates"} or value["type"] != "Point":
        return None
    try:
        return _position(value["coordinates"], "coordinates")
    except DjangoValidationError:
        return None


def _point(value):
    """``{lat, lon}`` (the app's shape) -> a GeoJSON Point; anything else is passed on as given,
    for the serializer's strict geometry field to judge."""
    if isinstance(value, dict) and "type" not in value and {"lat", "lon"} <= set(value):
        return {"type": "Point", "coordinates": [value["lon"], value["lat"]]}
    return value


# -- Activity items: ActivitySerializer's fields, with a lean check for plainly valid values ----------

_OFFLINE_KINDS = frozenset({ActivityKind.VISIT, ActivityKind.CALL})
#: A lean check's answer for a value it does not judge (invalid, or out of the ordinary): the
#: serializer's field then runs, and words the error.
_SLOW = object()


def _activity_serializer(context: dict):
    """ActivitySerializer with only the fields a sync payload feeds (the merchant is resolved by the
    batch): each field left costs every item a pass."""
    from crm.api.activities import ActivitySerializer

    serializer = ActivitySerializer(context=context)
    for name in list(serializer.fields):
        if name not in _ACTIVITY_SERIALIZER_FIELDS:
            del serializer.fields[name]
    return serializer


def _lean_check(field):
    """For a field of a kind whose whole work on a plain value is known (a choice, a string, an
    ISO 8601 time, a bounded number, a GeoJSON Point) and that has no other validators:
    ``check(value, tz)`` answering what ``field.run_validation(value)`` returns for a value that
    plainly passes, and ``_SLOW`` for anything else (never an error of its own). None for other
    fields."""
    from django.core.validators import (
        MaxLengthValidator,
        MaxValueValidator,
        MinValueValidator,
        ProhibitNullCharactersValidator,
    )
    from django.utils.dateparse import parse_datetime
    from rest_framework import ISO_8601
    from rest_framework.settings import api_settings
    from rest_framework.validators import ProhibitSurrogateCharactersValidator

    from core.api.fields import StrictGeometryField

    kind, validators = type(field), field.validators
    if kind is serializers.ChoiceField and not validators:
        table = {key: value for key, value in field.choice_strings_to_values.items() if key != ""}
        return lambda value, tz: table.get(value, _SLOW) if type(value) is str else _SLOW
    if kind is serializers.CharField and field.trim_whitespace and field.min_length is None:
        limit = field.max_length
        plain = (ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator)
        if not all(type(v) in plain or (type(v) is MaxLengthValidator and v.limit_value == limit) for v in validators):
            return None

        def text(value, tz):
            if type(value) is not str:
                return _SLOW
            value = value.strip()
            if not value or (limit is not None and len(value) > limit) or "\x00" in value:
                return _SLOW  # blank, too long, a NUL: the field decides and words it
            if not value.isascii():
                try:
                    value.encode()  # a surrogate does not encode: the field words it
                except UnicodeEncodeError:
                    return _SLOW
            return value

        return text
    if (
        kind is serializers.DateTimeField
        and not validators
        and not hasattr(field, "timezone")
        and list(getattr(field, "input_formats", api_settings.DATETIME_INPUT_FORMATS)) == [ISO_8601]
    ):

        def when(value, tz):
            if type(value) is str:
                try:
                    value = parse_datetime(value)
                except ValueError:
                    return _SLOW
            elif type(value) is not datetime.datetime:
                return _SLOW
            if value is None or value.utcoffset() is None or tz is None:
                return _SLOW  # not a time, or naive: the field decides
            try:
                return value.astimezone(tz)
            except (OverflowError, ValueError):
                return _SLOW

        return when
    if kind is serializers.FloatField:
        low, high = field.min_value, field.max_value
        expected = {MaxValueValidator: high, MinValueValidator: low}
        expected = {kind: limit for kind, limit in expected.items() if limit is not None}
        if len(validators) != len(expected) or {type(v): v.limit_value for v in validators} != expected:
            return None  # validators of its own: the field runs

        def number(value, tz):
            if type(value) is not float and type(value) is not int:
                return _SLOW
            try:
                value = float(value)
            except OverflowError:
                return _SLOW
            if (low is None or value >= low) and (high is None or value <= high):
                return value
            return _SLOW  # out of range, or NaN: the field words it

        return number
    if kind is StrictGeometryField and not validators and tuple(field.geom_types) == ("Point",):
        # (lon, lat), which activity_log_many takes as it is (no GEOS geometry built per visit).
        return lambda value, tz: _plain_position(value) or _SLOW
    return None


@functools.cache
def _activity_plan() -> list | None:
    """[(field name, source, lean check or None, skipped when absent)] of the sync fields of
    ActivitySerializer, in its order, built once per process; None when the serializer has more to
    it than its fields (validators, ``validate()``, ``validate_<field>()``, nested sources): then it
    runs whole."""
    from rest_framework.fields import empty

    serializer = _activity_serializer(context={})
    fields = [f for f in serializer.fields.values() if not f.read_only]
    plain = (
        not serializer.validators
        and type(serializer).validate is serializers.Serializer.validate
        and all(len(f.source_attrs) == 1 for f in fields)
        and not any(hasattr(serializer, f"validate_{f.field_name}") for f in fields)
    )
    if not plain:
        return None
    return [(f.field_name, f.source, _lean_check(f), not f.required and f.default is empty) for f in fields]


# The late-visit rule, for many (item, merchant, time) at once: which items it allows.
LATE_SQL = """
SELECT i.n
FROM unnest(%s::int[], %s::bigint[], %s::timestamptz[]) AS i(n, merchant_id, at)
CROSS JOIN LATERAL (
    SELECT e.grid_id FROM crm_merchantevent e
    WHERE e.pgh_obj_id = i.merchant_id AND e.pgh_created_at <= i.at
    ORDER BY e.pgh_created_at DESC, e.pgh_id DESC LIMIT 1
) m
JOIN grids_grid g ON g.id = m.grid_id
JOIN grids_subbranch sb ON sb.id = g.sub_branch_id
WHERE EXISTS (
    SELECT 1 FROM (
        SELECT DISTINCT ON (me.pgh_obj_id) me.role, me.grid_id, me.sub_branch_id, me.branch_id,
               me.start_date, me.end_date
        FROM grids_membershipevent me
        WHERE me.user_id = %s AND me.pgh_created_at <= i.at
        ORDER BY me.pgh_obj_id, me.pgh_created_at DESC, me.pgh_id DESC
    ) ms
    WHERE ms.role <> ALL(%s)
      AND ms.start_date <= (i.at AT TIME ZONE %s)::date
      AND (ms.end_date IS NULL OR ms.end_date >= (i.at AT TIME ZONE %s)::date)
      AND (ms.grid_id = g.id OR ms.sub_branch_id = sb.id OR ms.branch_id = sb.branch_id)
)
"""


def late_visits_allowed(*, user, candidates: list[tuple[int, int, datetime.datetime]]) -> set[int]:
    """Of ``(n, merchant_id, at)``, the ``n`` whose merchant ``user`` could change at ``at``
    (restrict() as it stood then; see the module docstring). One statement."""
    if not candidates:
        return set()
    ns, ids, ats = zip(*candidates, strict=True)
    zone = settings.TIME_ZONE
    with connection.cursor() as cursor:
        cursor.execute(LATE_SQL, [list(ns), list(ids), list(ats), user.pk, list(READ_ONLY_ROLES), zone, zone])
        return {row[0] for row in cursor.fetchall()}


# -- The batch --------------------------------------------------------------------------------------


class _Batch:
    def __init__(self, *, request, items: list[SyncItem]):
        self.request = request
        self.user = request.user
        self.items = items
        self.now = timezone.now()
        # Merchants the activity items name, read with the known UUIDs: {id: (grid_id, owner_id)}
        # in the user's change scope now, None when out of it (then the late-visit rule decides).
        self.merchants: dict[int, tuple[int | None, int | None] | None] = {}
        self.late: dict[int, Merchant] = {}  # n -> merchant, allowed by the late-visit rule
        self.created_merchants: dict[uuid.UUID, int] = {}
        # Whether a merchant item of this batch has written: then the merchants read at the start
        # may have changed (grid, owner), and activity_log_many reads them again.
        self.merchants_written = False
        self._activity_serializer = None
        # DRF's DateTimeField's time zone (None: naive times), for the lean checks.
        self.tz = timezone.get_current_timezone() if settings.USE_TZ else None

    # -- what already exists for these UUIDs (earlier batches) ----------------------------------
    _KNOWN_SQL = (
        f"SELECT 0, client_uuid, 'activity', id, by_id, NULL::bigint FROM {Activity._meta.db_table}"
        " WHERE client_uuid = ANY(%s::uuid[])"
        f" UNION ALL SELECT 1, client_uuid, 'merchant_' || kind, merchant_id, by_id, NULL"
        f" FROM {MerchantSyncEdit._meta.db_table} WHERE client_uuid = ANY(%s::uuid[])"
    )

    def _read(self, *, merchant_ids=()) -> dict[uuid.UUID, tuple[str, int, int]]:
        """One statement (the UUIDs as one array: a placeholder per UUID cost more than the lookup):
        the rows already stored under the batch's UUIDs, and, given ``merchant_ids``, which of them
        the user may change now (restrict(user, "change"), with grid and owner), into
        ``self.merchants``. Returns {client_uuid: (kind, id, by_id)}."""
        uuids = [str(i.client_uuid) for i in self.items]
        sql, params = self._KNOWN_SQL, [uuids, uuids]
        scope_sql = merchants_in_scope_sql(self.user) if merchant_ids else None
        if scope_sql is not None:
            sql += f" UNION ALL SELECT 2, NULL, NULL, m.id, m.grid_id, m.owner_id FROM ({scope_sql[0]}) m"
            params += [*scope_sql[1], list(merchant_ids)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        known = {}
        merchants = dict.fromkeys(merchant_ids)
        # Activities first, then merchant edits (which win for a UUID in both, as before).
        for source, cu, kind, pk, by, owner in sorted(rows, key=lambda row: row[0]):
            if source == 2:
                merchants[pk] = (by, owner)  # (grid_id, owner_id)
            else:
                known[cu] = (kind, pk, by)
        if merchant_ids:
            self.merchants = merchants
        return known

    def _known(self) -> dict[uuid.UUID, tuple[str, int, int]]:
        return self._read()

    def _activity_merchant_ids(self) -> dict[int, list[int]]:
        """Merchant ids the activity items name -> the items (n) naming them."""
        wanted: dict[int, list[int]] = {}
        for n, item in enumerate(self.items):
            if item.type != "activity":
                continue
            mid = item.payload.get("merchant")
            if type(mid) is int and 0 < mid < 2**63:
                wanted.setdefault(mid, []).append(n)
        return wanted

    def _late_visits(self, wanted: dict) -> None:
        """The late-visit rule (one statement) for the merchants named that are out of scope now."""
        earliest = self.now - LATE_WINDOW
        latest = self.now + datetime.timedelta(minutes=5)
        candidates = []
        for mid, uses in wanted.items():
            if self.merchants.get(mid) is not None:
                continue
            for n in uses:
                at = _activity_time(self.items[n])
                if at is not None and earliest <= at <= latest:
                    candidates.append((n, mid, at))
        allowed = late_visits_allowed(user=self.user, candidates=candidates)
        if allowed:
            late_ids = {mid for n, mid, _at in candidates if n in allowed}
            found = {m.pk: m for m in Merchant.objects.filter(pk__in=late_ids, grid__isnull=False)}
            self.late = {n: found[mid] for n, mid, _at in candidates if n in allowed and mid in found}

    def run(self) -> list[dict]:
        results: list[dict] = []
        # One scope resolution per action for the whole batch (no membership changes inside it).
        # No savepoint of its own: nothing in here is undone on its own (each merchant item has its
        # savepoint); an error fails the request, and with it the caller's transaction.
        with scoping.scope_cache(), transaction.atomic(savepoint=False):
            _lock_uuids(i.client_uuid for i in self.items)
            wanted = self._activity_merchant_ids()
            known = self._read(merchant_ids=wanted)
            if wanted:
                self._late_visits(wanted)
            n = 0
            while n < len(self.items):
                if self.items[n].type == "activity":
                    # A run of activity items in a row: logged together (activity_log_many), so the
                    # batch keeps its order with the merchant items around it.
                    end = n
                    while end < len(self.items) and self.items[end].type == "activity":
                        end += 1
                    answered = self._activities(range(n, end), known)
                else:
                    end = n + 1
                    answered = [self._one(n, self.items[n], known)]
                    self.merchants_written = True
                for item, result in zip(self.items[n:end], answered, strict=True):
                    if result.status == CREATED:
                        known[item.client_uuid] = (self._kind_of(item), result.id, self.user.pk)
                    results.append(result.as_dict())
                n = end
        return results

    @staticmethod
    def _kind_of(item: SyncItem) -> str:
        return item.type

    def _duplicate(self, item: SyncItem, found: tuple[str, int, int]) -> ItemResult:
        kind, pk, by = found
        if by != self.user.pk or kind != item.type:
            return ItemResult(item.client_uuid, REJECTED, errors={"client_uuid": [_("This id is already used.")]})
        server = None
        if kind != "activity":
            server = merchant_rows(user=self.user, ids=[pk]).get(pk)
        return ItemResult(item.client_uuid, DUPLICATE, id=pk, server=server)

    def _one(self, n: int, item: SyncItem, known: dict) -> ItemResult:
        if item.client_uuid in known:
            return self._duplicate(item, known[item.client_uuid])
        handler = {
            "merchant_create": self._merchant_create,
            "merchant_update": self._merchant_update,
        }[item.type]
        try:
            with transaction.atomic():
                result = handler(n, item)
                if result.status in (REJECTED, CONFLICT):
                    raise _Undo(result)
                return result
        except _Undo as undo:
            return undo.result
        except IntegrityError:
            # Another request stored this UUID between our lookup and our insert (the advisory
            # lock makes this rare): the savepoint is rolled back; answer with the row that won.
            found = self._known_one(item.client_uuid)
            if found is not None:
                return self._duplicate(item, found)
            return ItemResult(
                item.client_uuid,
                REJECTED,
                errors={"non_field_errors": [_("This conflicts with a record stored meanwhile.")]},
            )

    def _known_one(self, cu: uuid.UUID):
        self_items = [i for i in self.items if i.client_uuid == cu]
        saved, self.items = self.items, self_items
        try:
            return self._known().get(cu)
        finally:
            self.items = saved

    # -- activity -------------------------------------------------------------------------------
    def _activities(self, ns: range, known: dict) -> list[ItemResult]:
        """Activity items ``ns`` (in a row): each validated by ActivitySerializer's fields as POST
        /activities/ does, then all logged by activity_log_many (the rules of activity_log, set-based);
        late visits in a second call, with the user's scope granted their merchants' grids."""
        answers: dict[int, ItemResult] = {}
        groups: dict[bool, list[tuple[int, dict, dict | None]]] = {False: [], True: []}
        for n in ns:
            item = self.items[n]
            if item.client_uuid in known:
                answers[n] = self._duplicate(item, known[item.client_uuid])
                continue
            prepared = self._activity(n, item)
            if isinstance(prepared, ItemResult):
                answers[n] = prepared
            else:
                kwargs, late, warnings = prepared
                groups[late].append((n, kwargs, warnings))
        for late, group in groups.items():
            if not group:
                continue
            items = [kwargs for _n, kwargs, _w in group]
            if late:
                with scoping.scope_grant(self.user, {kwargs["merchant"].grid_id for kwargs in items}):
                    logged = activity_log_many(by=self.user, items=items)
            else:
                # The merchants' scope as read with the known UUIDs (same transaction, same scope),
                # unless a merchant item of the batch wrote since.
                scoped = None if self.merchants_written else self.merchants
                logged = activity_log_many(by=self.user, items=items, scoped=scoped)
            for (n, _kwargs, warnings), result in zip(group, logged, strict=True):
                answers[n] = self._activity_answer(self.items[n], result, late, warnings)
        return [answers[n] for n in ns]

    def _activity_answer(self, item: SyncItem, result: LogResult, late: bool, warnings: dict | None) -> ItemResult:
        if result.status == REJECTED:
            return ItemResult(item.client_uuid, REJECTED, errors=_rename(_errors(result.error), _ACTIVITY_ERROR_KEYS))
        if result.status == DUPLICATE:
            return ItemResult(item.client_uuid, DUPLICATE, id=result.id)
        if result.row is not None:
            row = result.row
        else:  # logged through activity_log (a lead move)
            a = result.activity
            row = {f: getattr(a, f) for f in ("merchant_id", "occurred_at", "checkin_flag", "checkin_distance_m")}
        server = {
            "id": result.id,
            "merchant": row["merchant_id"],
            "occurred_at": row["occurred_at"].isoformat(),
            "checkin_flag": row["checkin_flag"] or None,
            "checkin_distance_m": row["checkin_distance_m"],
            "late": late,
        }
        return ItemResult(item.client_uuid, CREATED, id=result.id, server=server, warnings=warnings)

    def _activity(self, n: int, item: SyncItem) -> ItemResult | tuple[dict, bool, dict | None]:
        """The item as activity_log's keyword arguments, whether it is a late visit, and its
        warnings; or its rejection."""
        p = item.payload
        kind = p.get("kind", ActivityKind.VISIT)
        if kind not in _OFFLINE_KINDS:
            return ItemResult(item.client_uuid, REJECTED, errors={"kind": [_("Offline, log a visit or a call.")]})
        merchant, late = self._activity_merchant(n, item)
        if merchant is None:
            return ItemResult(item.client_uuid, REJECTED, errors=_not_found())
        data = {key: p[key] for key in _ACTIVITY_FIELDS if key in p and p[key] is not None}
        # The device time as the datetime it is: DRF's DateTimeField takes it as parsing its ISO
        # form would give it (then the same time zone), without writing and parsing it again.
        data.setdefault("occurred_at", item.device_time)
        data["kind"] = kind
        checkin = p.get("checkin")
        if isinstance(checkin, dict) and "type" not in checkin:
            data["checkin"] = _point(checkin)
            if checkin.get("accuracy_m") is not None:
                data["checkin_accuracy_m"] = checkin["accuracy_m"]
        elif checkin is not None:
            data["checkin"] = checkin
        if p.get("checkin_accuracy_m") is not None:
            data["checkin_accuracy_m"] = p["checkin_accuracy_m"]
        warnings = None
        if p.get("advance_lead") is not None or p.get("advance_to"):
            if late:
                warnings = {"advance_lead": [_("Not applied: this merchant is no longer in your grids.")]}
            else:
                data["advance_lead_id"] = p.get("advance_lead")
                data["advance_to"] = p.get("advance_to")
        try:
            validated = self._validate_activity(data)
        except serializers.ValidationError as exc:
            return ItemResult(item.client_uuid, REJECTED, errors=_rename(_errors(exc), _ACTIVITY_ERROR_KEYS))
        # As ActivitySerializer.create() hands them to activity_log.
        kwargs = {key: value for key, value in validated.items() if value is not None}
        kwargs.pop("attendee_merchant_ids", None)
        kwargs.pop("attendee_person_ids", None)
        if "checkin_location" in kwargs:
            kwargs["checkin"] = kwargs.pop("checkin_location")
        if "advance_lead_id" in kwargs:
            kwargs["advance_lead"] = kwargs.pop("advance_lead_id")
        if not kwargs.get("advance_to"):
            kwargs.pop("advance_to", None)
        kwargs["merchant"] = merchant
        kwargs["client_uuid"] = item.client_uuid
        kwargs["device_time"] = item.device_time
        return kwargs, late, warnings

    def _serializer(self):
        """The batch's ActivitySerializer (its sync fields), for what the lean checks leave to it."""
        if self._activity_serializer is None:
            self._activity_serializer = _activity_serializer(context={"request": self.request})
        return self._activity_serializer

    def _validate_activity(self, data: dict) -> dict:
        """``ActivitySerializer.run_validation(data)`` for a sync payload: DRF's to_internal_value()
        over the same fields in the same order, so the same values and errors. A value a field's
        lean check (``_lean_check``) finds plainly valid is taken as that field would take it;
        anything else (an error, an unusual value, a lead to move) is judged by the field itself, so
        every error is the serializer's own, per item and per field."""
        plan = _activity_plan()
        if plan is None:  # the serializer has rules of its own beyond its fields: run it whole
            return self._serializer().run_validation(data)
        tz = self.tz
        validated, errors = {}, {}
        for name, source, lean, skip_if_absent in plan:
            if name in data:
                if lean is not None:
                    value = lean(data[name], tz)
                    if value is not _SLOW:
                        validated[source] = value
                        continue
            elif skip_if_absent:
                continue  # what run_validation(empty) would do: SkipField
            field = self._serializer().fields[name]
            try:
                value = field.run_validation(field.get_value(data))
            except serializers.ValidationError as exc:
                errors[name] = exc.detail
            except DjangoValidationError as exc:
                errors[name] = serializers.get_error_detail(exc)
            except SkipField:
                continue
            else:
                validated[source] = value
        if errors:
            raise serializers.ValidationError(errors)
        return validated

    def _activity_merchant(self, n: int, item: SyncItem) -> tuple[Merchant | int | None, bool]:
        """(the merchant or its id, whether by the late-visit rule) or (None, False)."""
        p = item.payload
        mid = p.get("merchant")
        if mid is None and p.get("merchant_client_uuid") is not None:
            # A merchant created offline: the merchant_create item's UUID (this batch or an earlier one).
            try:
                mcu = uuid.UUID(str(p["merchant_client_uuid"]))
            except ValueError:
                return None, False
            mid = self.created_merchants.get(mcu)
            if mid is None:
                mid = (
                    MerchantSyncEdit.objects.filter(client_uuid=mcu, kind=MerchantSyncEdit.Kind.CREATE, by=self.user)
                    .values_list("merchant_id", flat=True)
                    .first()
                )
            if mid is None:
                return None, False
            merchant = Merchant.objects.restrict(self.user, "change").filter(pk=mid).select_related("owner").first()
            return merchant, False
        if n in self.late:
            return self.late[n], True
        if type(mid) is int and self.merchants.get(mid) is not None:
            return mid, False
        return None, False

    # -- merchants ------------------------------------------------------------------------------
    def _merchant_data(self, fields: dict) -> dict:
        data = {key: fields[key] for key in _MERCHANT_FIELDS if key in fields}
        if "location" in data:
            data["location"] = _point(data["location"])
        return data

    def _merchant_create(self, n: int, item: SyncItem) -> ItemResult:
        from crm.api.serializers import MerchantSerializer

        p = item.payload
        data = self._merchant_data(p)
        phone = p.get("phone") if isinstance(p.get("phone"), str) else None
        serializer = MerchantSerializer(data=data, context={"request": self.request})
        if not serializer.is_valid():
            errors = _errors(serializers.ValidationError(serializer.errors))
            return ItemResult(item.client_uuid, REJECTED, errors=errors, warnings=self._dupes(data, None, phone))
        try:
            merchant = serializer.save()
        except (serializers.ValidationError, DjangoValidationError) as exc:
            return ItemResult(
                item.client_uuid,
                REJECTED,
                errors=_errors(exc),
                warnings=self._dupes(serializer.validated_data, None, phone),
            )
        MerchantSyncEdit.objects.create(
            client_uuid=item.client_uuid,
            kind=MerchantSyncEdit.Kind.CREATE,
            merchant=merchant,
            by=self.user,
            version=merchant.version,
            device_time=item.device_time,
        )
        self.created_merchants[item.client_uuid] = merchant.pk
        # Not blocking offline (the merchant was met in the field): the app shows the warning.
        warnings = self._dupes(serializer.validated_data, merchant.pk, phone)
        server = merchant_rows(user=self.user, ids=[merchant.pk]).get(merchant.pk)
        return ItemResult(item.client_uuid, CREATED, id=merchant.pk, server=server, warnings=warnings)

    def _dupes(self, data: dict, exclude_id: int | None, phone: str | None) -> dict | None:
        name = data.get("name") if isinstance(data.get("name"), str) else ""
        code = data.get("credit_code") if isinstance(data.get("credit_code"), str) else None
        location = data.get("location") if hasattr(data.get("location"), "geom_type") else None
        if not (name or code or phone):
            return None
        found = merchant_duplicate_candidates(
            name=name, credit_code=code, phone=phone, location=location, exclude_id=exclude_id, user=self.user
        )
        if found["candidates"] or found["hidden"]:
            return {"duplicates": found}
        return None

    def _merchant_update(self, n: int, item: SyncItem) -> ItemResult:
        from crm.api.serializers import MerchantSerializer

        p = item.payload
        rejected = lambda errors: ItemResult(item.client_uuid, REJECTED, errors=errors)  # noqa: E731
        mid, base, fields = p.get("merchant"), p.get("base_version"), p.get("fields")
        if not isinstance(mid, int) or isinstance(mid, bool) or not 0 < mid < 2**63:
            return rejected(_not_found())
        if not isinstance(base, int) or isinstance(base, bool) or not 0 < base < 2**31:
            return rejected({"base_version": [_("Give the version the edit was made on (a whole number).")]})
        if not isinstance(fields, dict) or not fields:
            return rejected({"fields": [_("Give the fields to change.")]})
        unknown = sorted(set(fields) - set(_MERCHANT_FIELDS))
        if unknown:
            return rejected({key: [_("This field cannot be changed.")] for key in unknown})
        merchant = Merchant.objects.restrict(self.user, "change").select_for_update(of=("self",)).filter(pk=mid).first()
        if merchant is None:
            return rejected(_not_found())
        if merchant.version != base:
            return ItemResult(
                item.client_uuid,
                CONFLICT,
                id=mid,
                errors={"base_version": [_("Someone changed this merchant meanwhile: review their version.")]},
                server=merchant_rows(user=self.user, ids=[mid]).get(mid),
            )
        serializer = MerchantSerializer(
            merchant, data=self._merchant_data(fields), partial=True, context={"request": self.request}
        )
        if not serializer.is_valid():
            return rejected(_errors(serializers.ValidationError(serializer.errors)))
        try:
            merchant = serializer.save()
        except (serializers.ValidationError, DjangoValidationError) as exc:
            return rejected(_errors(exc))
        MerchantSyncEdit.objects.create(
            client_uuid=item.client_uuid,
            kind=MerchantSyncEdit.Kind.UPDATE,
            merchant=merchant,
            by=self.user,
            base_version=base,
            version=merchant.version,
            device_time=item.device_time,
        )
        server = merchant_rows(user=self.user, ids=[mid]).get(mid)
        return ItemResult(item.client_uuid, CREATED, id=mid, server=server)


def _activity_time(item: SyncItem) -> datetime.datetime | None:
    """T of the late-visit rule: the payload's occurred_at, else the device time."""
    raw = item.payload.get("occurred_at")
    if raw is None:
        return item.device_time
    try:
        return parse_time(raw, "occurred_at")
    except DjangoValidationError:
        return None


def sync_batch(*, request, items: list[SyncItem]) -> list[dict]:
    """Apply a parsed batch for ``request.user``; one answer per item, in order (module docstring)."""
    return _Batch(request=request, items=items).run()


# -- Photos -----------------------------------------------------------------------------------------


def sync_photo(
    *,
    request,
    client_uuid: uuid.UUID,
    uploaded_file,
    kind: str = PhotoKind.STOREFRONT,
    activity_id: int | None = None,
    activity_client_uuid: uuid.UUID | None = None,
) -> dict:
    """Attach a photo taken offline to a visit or call (by its id or the activity item's UUID),
    idempotently by the photo's own UUID. The same answer shape as a batch item. A photo of the
    user's own late visit (module docstring) is accepted like the visit was."""
    user = request.user
    rejected = lambda errors: ItemResult(client_uuid, REJECTED, errors=errors).as_dict()  # noqa: E731
    with transaction.atomic():
        _lock_uuids([client_uuid])
        existing = ActivityPhoto.objects.filter(client_uuid=client_uuid).values_list("pk", "activity__by_id").first()
        if existing is not None:
            if existing[1] != user.pk:
                return rejected({"client_uuid": [_("This id is already used.")]})
            return ItemResult(client_uuid, DUPLICATE, id=existing[0]).as_dict()
        unknown = {"activity": [_("Activity not found: send the visit first.")]}
        if activity_client_uuid is not None:
            activity = Activity.objects.filter(client_uuid=activity_client_uuid, by=user).first()
        else:
            activity = Activity.objects.restrict(user, "change").filter(pk=activity_id).first()
            if activity is None:
                activity = Activity.objects.filter(pk=activity_id, by=user).first()
        if activity is None:
            return rejected(unknown)
        late = not Activity.objects.restrict(user, "change").filter(pk=activity.pk).exists()
        if late and (
            activity.merchant_id is None
            or activity.by_id != user.pk
            or activity.received_at < timezone.now() - LATE_WINDOW
        ):
            return rejected(unknown)
        photo = None
        try:
            with transaction.atomic():
                if late:
                    with scoping.scope_grant(user, [activity.merchant.grid_id]):
                        photo = photo_attach(activity=activity, by=user, uploaded_file=uploaded_file, kind=kind)
                else:
                    photo = photo_attach(activity=activity, by=user, uploaded_file=uploaded_file, kind=kind)
                ActivityPhoto.objects.filter(pk=photo.pk).update(client_uuid=client_uuid)
        except IntegrityError:
            if photo is not None:
                photo.file.delete(save=False)
            existing = (
                ActivityPhoto.objects.filter(client_uuid=client_uuid, activity__by=user).values_list("pk").first()
            )
            if existing is not None:
                return ItemResult(client_uuid, DUPLICATE, id=existing[0]).as_dict()
            return rejected({"client_uuid": [_("This id is already used.")]})
        except (DjangoValidationError, serializers.ValidationError) as exc:
            return rejected(_errors(exc))
        except PermissionDenied:
            return rejected(unknown)
    return ItemResult(
        client_uuid, CREATED, id=photo.pk, server={"id": photo.pk, "activity": activity.pk, "kind": photo.kind}
    ).as_dict()
