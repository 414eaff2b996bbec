"""A merchant's timeline: one list of everything, newest first, paged by time.

Sources, each read with ONE query whatever the number of rows (no N+1):
  * activities of the merchant (visits, calls; with check-in flag/distance) and the events it
    attended (restricted: an event of a grid the user cannot see stays hidden), with their photos
    (one more query for all photos of the page);
  * lead stage changes (from -> to, by);
  * the merchant's own history from pghistory (``crm.MerchantEvent``): creation, and every update
    diffed against the previous snapshot of the same merchant in SQL (``lag()``), so it reads
    "owner A -> B", "grid X -> Y", "name changed"; updates that changed nothing a person sees
    (``updated_at`` only) are dropped in SQL. The acting user comes from the pghistory context.
    Merchants merged into this one (``crm.services.merge``) keep their history: their events are
    found through the merge context (``{"merged_<drop id>": <keep id>}``) and shown here too.

Paging is by a cursor (``before``) that encodes the sort key of the last item shown:
(time, source rank, id), so items sharing a timestamp are neither lost nor repeated.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.choices import (
    ActivityKind,
    CheckinFlag,
    EventType,
    Intent,
    LeadStage,
    MerchantStatus,
    Outcome,
    PhotoKind,
    ProductKind,
)
from crm.models import Activity, ActivityPhoto, EventAttendance, LeadStageChange, Merchant

DEFAULT_LIMIT = 30
MAX_LIMIT = 100

# Source ranks: the tie-breaker between items of the same instant (higher comes first).
RANK_MERCHANT, RANK_STAGE, RANK_ACTIVITY = 0, 1, 2


@dataclass(frozen=True, order=True)
class Cursor:
    at_us: int  # microseconds since the epoch (UTC)
    rank: int
    id: int

    def encode(self) -> str:
        return f"{self.at_us}_{self.rank}_{self.id}"

    @classmethod
    def decode(cls, value: str) -> Cursor:
        parts = (value or "").split("_")
        if len(parts) != 3 or not all(p.isdigit() and len(p) < 19 for p in parts):
            raise ValidationError({"before": [_("Not a valid timeline cursor.")]})
        cursor = cls(int(parts[0]), int(parts[1]), int(parts[2]))
        try:
            cursor.at  # noqa: B018 - a time past year 9999 would fail later, in a query
        except OverflowError:
            raise ValidationError({"before": [_("Not a valid timeline cursor.")]}) from None
        return cursor

    @property
    def at(self) -> datetime.datetime:
        return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(microseconds=self.at_us)


def _us(at: datetime.datetime) -> int:
    delta = at - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _before_q(cursor: Cursor | None, rank: int, at_field: str, id_field: str = "id") -> Q:
    """Rows of source ``rank`` that sort strictly after ``cursor`` (i.e. are older)."""
    if cursor is None:
        return Q()
    at = cursor.at
    if rank < cursor.rank:
        return Q(**{f"{at_field}__lte": at})
    if rank == cursor.rank:
        return Q(**{f"{at_field}__lt": at}) | Q(**{at_field: at, f"{id_field}__lt": cursor.id})
    return Q(**{f"{at_field}__lt": at})


def _before_sql(cursor: Cursor | None, rank: int, at_col: str, id_col: str) -> tuple[str, dict]:
    """The same as ``_before_q`` in SQL, with named parameters."""
    if cursor is None:
        return "TRUE", {}
    params = {"before_at": cursor.at, "before_id": cursor.id}
    if rank < cursor.rank:
        return f"{at_col} <= %(before_at)s", params
    if rank == cursor.rank:
        return f"({at_col}, {id_col}) < (%(before_at)s, %(before_id)s)", params
    return f"{at_col} < %(before_at)s", params


def _user(pk, name) -> dict | None:
    return {"id": pk, "display": name} if pk else None


def _label(choices, value) -> str:
    return str(dict(choices).get(value, value or ""))


# -- Activities -----------------------------------------------------------------------------------


def _photo_url(pk: int) -> str | None:
    # Photos are served by the photo endpoint, which checks the user may see the merchant.
    try:
        return reverse("api:photo-file", args=[pk])
    except NoReverseMatch:
        return None


def _activity_item(a: Activity, photos: list[ActivityPhoto], merchant_id: int) -> dict:
    parts = [_label(ActivityKind.choices, a.kind)]
    if a.title:
        parts.append(a.title)
    if a.outcome:
        parts.append(_label(Outcome.choices, a.outcome))
    checkin = None
    if a.kind == ActivityKind.VISIT and (a.checkin_flag or a.checkin_distance_m is not None):
        checkin = {
            "flag": a.checkin_flag or None,
            "flag_display": _label(CheckinFlag.choices, a.checkin_flag) if a.checkin_flag else "",
            "flagged": bool(a.checkin_flag) and a.checkin_flag != CheckinFlag.OK,
            "distance_m": round(a.checkin_distance_m) if a.checkin_distance_m is not None else None,
            "accuracy_m": round(a.checkin_accuracy_m) if a.checkin_accuracy_m is not None else None,
        }
    duration = None
    if a.checkout_at:
        duration = round((a.checkout_at - a.occurred_at).total_seconds() / 60)
    return {
        "type": "activity",
        "id": a.pk,
        "at": a.occurred_at,
        "cursor": Cursor(_us(a.occurred_at), RANK_ACTIVITY, a.pk).encode(),
        "by": _user(a.by_id, str(a.by) if a.by_id else None),
        "title": " · ".join(parts),
        "activity": {
            "kind": a.kind,
            "kind_display": _label(ActivityKind.choices, a.kind),
            "event_type": a.event_type or None,
            "event_type_display": _label(EventType.choices, a.event_type) if a.event_type else "",
            "attended": a.merchant_id != merchant_id,
            "title": a.title,
            "outcome": a.outcome or None,
            "outcome_display": _label(Outcome.choices, a.outcome) if a.outcome else "",
            "intent": a.intent or None,
            "intent_display": _label(Intent.choices, a.intent) if a.intent else "",
            "notes": a.notes,
            "next_step": a.next_step,
            "checkin": checkin,
            "duration_min": duration,
            "photos": [
                {
                    "id": p.pk,
                    "kind": p.kind,
                    "kind_display": _label(PhotoKind.choices, p.kind),
                    "taken_at": p.exif_taken_at,
                    "url": _photo_url(p.pk),
                }
                for p in photos
            ],
        },
    }


def _activities(merchant: Merchant, user, cursor: Cursor | None, limit: int) -> list[dict]:
    cols = (
        "id",
        "kind",
        "merchant_id",
        "occurred_at",
        "title",
        "event_type",
        "notes",
        "outcome",
        "intent",
        "next_step",
        "checkin_accuracy_m",
        "checkin_distance_m",
        "checkin_flag",
        "checkout_at",
        "by__id",
        "by__username",
        "by__full_name",
    )
    before = _before_q(cursor, RANK_ACTIVITY, "occurred_at")
    order = ("-occurred_at", "-id")
    # Rows about a merchant are seen by whoever sees the merchant (the "activity" scope rule), and
    # the caller fetched ``merchant`` through restrict(): no second scope check on its own rows.
    own = Activity.objects.filter(before, merchant=merchant).select_related("by").only(*cols).order_by(*order)
    own = list(own[: limit + 1])
    # Events it attended belong to a grid: only those the user may see.
    attended_ids = EventAttendance.objects.filter(merchant=merchant).values("activity_id")
    attended = list(
        Activity.objects.restrict(user)
        .filter(before, pk__in=attended_ids)
        .exclude(merchant=merchant)
        .select_related("by")
        .only(*cols)
        .order_by(*order)[: limit + 1]
    )
    rows = own + attended
    photos: dict[int, list] = {}
    if rows:
        for photo in ActivityPhoto.objects.filter(activity_id__in=[a.pk for a in rows]).only(
            "id", "activity_id", "kind", "exif_taken_at"
        ):
            photos.setdefault(photo.activity_id, []).append(photo)
    return [_activity_item(a, photos.get(a.pk, []), merchant.pk) for a in rows]


# -- Stage changes --------------------------------------------------------------------------------


def _stage_changes(merchant: Merchant, cursor: Cursor | None, limit: int) -> list[dict]:
    rows = (
        LeadStageChange.objects.filter(_before_q(cursor, RANK_STAGE, "at"), lead__merchant=merchant)
        .select_related("by", "lead")
        .only(
            "id",
            "at",
            "from_stage",
            "to_stage",
            "activity_id",
            "lead__id",
            "lead__product",
            "lead__lost_note",
            "by__id",
            "by__username",
            "by__full_name",
        )
        .order_by("-at", "-id")[: limit + 1]
    )
    out = []
    for sc in rows:
        product = _label(ProductKind.choices, sc.lead.product)
        to = _label(LeadStage.choices, sc.to_stage)
        if sc.from_stage:
            title = _("%(product)s lead: %(from)s → %(to)s") % {
                "product": product,
                "from": _label(LeadStage.choices, sc.from_stage),
                "to": to,
            }
        else:
            title = _("New %(product)s lead: %(to)s") % {"product": product, "to": to}
        out.append(
            {
                "type": "stage_change",
                "id": sc.pk,
                "at": sc.at,
                "cursor": Cursor(_us(sc.at), RANK_STAGE, sc.pk).encode(),
                "by": _user(sc.by_id, str(sc.by) if sc.by_id else None),
                "title": title,
                "stage_change": {
                    "lead_id": sc.lead_id,
                    "product": sc.lead.product,
                    "product_display": product,
                    "from": sc.from_stage or None,
                    "from_display": _label(LeadStage.choices, sc.from_stage) if sc.from_stage else "",
                    "to": sc.to_stage,
                    "to_display": to,
                    "activity_id": sc.activity_id,
                },
            }
        )
    return out


# -- The merchant's own history (pghistory) ----------------------------------------------------------

# Snapshot columns compared with the previous event of the same merchant.
DIFFED = ("name", "credit_code", "industry_id", "address", "place_id", "grid_id", "owner_id", "status", "location")

EVENTS_SQL = """
WITH RECURSIVE merged(id) AS (
    SELECT %(m)s::bigint
    UNION
    SELECT substr(kv.key, 8)::bigint
      FROM merged
      JOIN crm_merchantevent e ON e.pgh_obj_id = merged.id
      JOIN pghistory_context c ON c.id = e.pgh_context_id
      CROSS JOIN LATERAL jsonb_each_text(c.metadata) kv
     WHERE kv.key ~ '^merged_[0-9]+$' AND length(kv.key) < 26 AND kv.value = merged.id::text
), ev AS (
    SELECT e.pgh_id, e.pgh_created_at, e.pgh_label, e.pgh_obj_id, e.pgh_context_id, __COLS__, __LAGS__
      FROM crm_merchantevent e
     WHERE e.pgh_obj_id IN (SELECT id FROM merged)
    WINDOW w AS (PARTITION BY e.pgh_obj_id ORDER BY e.pgh_id)
)
SELECT ev.pgh_id, ev.pgh_created_at, ev.pgh_label, ev.pgh_obj_id, __OUT__,
       actor.id, COALESCE(NULLIF(actor.full_name, ''), actor.username),
       g.name, pg.name, o.id, COALESCE(NULLIF(o.full_name, ''), o.username),
       po.id, COALESCE(NULLIF(po.full_name, ''), po.username),
       i.name_zh, pi.name_zh, pl.name, ppl.name,
       mn.names,
       (SELECT mm.name
          FROM crm_merchant mm
         WHERE mm.id = CASE WHEN c.metadata->>('merged_' || ev.pgh_obj_id::text) ~ '^[0-9]{1,18}$'
                            THEN (c.metadata->>('merged_' || ev.pgh_obj_id::text))::bigint END) AS merged_into
  FROM ev
  LEFT JOIN pghistory_context c ON c.id = ev.pgh_context_id
  -- The merchants merged into this one in this event's context (crm.services.merge).
  LEFT JOIN LATERAL (
      SELECT string_agg(mm.name, '、' ORDER BY mm.id) AS names
        FROM jsonb_each_text(c.metadata) kv
        JOIN crm_merchant mm ON mm.id = CASE WHEN kv.key ~ '^merged_[0-9]+$' AND length(kv.key) < 26
                                             THEN substr(kv.key, 8)::bigint END
       WHERE kv.value = ev.pgh_obj_id::text
  ) mn ON TRUE
  LEFT JOIN grids_user actor
         ON actor.id = CASE WHEN jsonb_typeof(c.metadata->'user') = 'number'
                            THEN (c.metadata->>'user')::bigint END
  LEFT JOIN grids_grid g ON g.id = ev.grid_id
  LEFT JOIN grids_grid pg ON pg.id = ev.p_grid_id
  LEFT JOIN grids_user o ON o.id = ev.owner_id
  LEFT JOIN grids_user po ON po.id = ev.p_owner_id
  LEFT JOIN crm_industry i ON i.id = ev.industry_id
  LEFT JOIN crm_industry pi ON pi.id = ev.p_industry_id
  LEFT JOIN grids_place pl ON pl.id = ev.place_id
  LEFT JOIN grids_place ppl ON ppl.id = ev.p_place_id
 WHERE (ev.pgh_label <> 'update' OR __CHANGED__ OR mn.names IS NOT NULL) AND __BEFORE__
 ORDER BY ev.pgh_created_at DESC, ev.pgh_id DESC
 LIMIT %(limit)s
"""


def _events_sql(before: str) -> str:
    return (
        EVENTS_SQL.replace("__COLS__", ", ".join(f"e.{c}" for c in DIFFED))
        .replace("__LAGS__", ", ".join(f"lag(e.{c}) OVER w AS p_{c}" for c in DIFFED))
        .replace(
            "__OUT__",
            ", ".join(f"ev.{c}, ev.p_{c}" for c in DIFFED if c != "location")
            + ", ev.location IS DISTINCT FROM ev.p_location",
        )
        .replace("__CHANGED__", "(" + " OR ".join(f"ev.{c} IS DISTINCT FROM ev.p_{c}" for c in DIFFED) + ")")
        .replace("__BEFORE__", before)
    )


def _merchant_events(merchant: Merchant, cursor: Cursor | None, limit: int) -> list[dict]:
    before, params = _before_sql(cursor, RANK_MERCHANT, "ev.pgh_created_at", "ev.pgh_id")
    params.update({"m": merchant.pk, "limit": limit + 1})
    with connection.cursor() as c:
        c.execute(_events_sql(before), params)
        rows = c.fetchall()
    out = []
    for row in rows:
        pgh_id, at, label, obj_id = row[:4]
        vals = row[4:20]
        cur = dict(zip(DIFFED[:-1], vals[0::2], strict=True))
        prev = dict(zip(DIFFED[:-1], vals[1::2], strict=True))
        moved = row[20]
        (
            actor_id,
            actor_name,
            grid,
            p_grid,
            owner_id,
            owner,
            p_owner_id,
            p_owner,
            industry,
            p_industry,
            place,
            p_place,
            merged_names,
            merged_into,
        ) = row[21:]
        if label == "insert":
            title, changes = _("Merchant created"), []
        else:
            names = {
                "grid": (p_grid, grid),
                "owner": (p_owner, owner),
                "industry": (p_industry, industry),
                "place": (p_place, place),
            }
            title, changes = _describe_update(cur, prev, names, moved)
        if merged_names and obj_id == merchant.pk:
            merged = _("Merged with %(names)s") % {"names": merged_names}
            title = merged + (f" · {title}" if changes else "")
        if merged_into and obj_id != merchant.pk:
            title = _("Merged into %(name)s") % {"name": merged_into}
        item = {
            "type": "merchant",
            "id": pgh_id,
            "at": at,
            "cursor": Cursor(_us(at), RANK_MERCHANT, pgh_id).encode(),
            "by": _user(actor_id, actor_name),
            "title": title,
            "merchant_event": {"label": label, "changes": changes},
        }
        if obj_id != merchant.pk:
            # History of a merchant merged into this one: say whose it was.
            item["merchant_event"]["merchant"] = {"id": obj_id, "name": cur["name"]}
            item["title"] = f"[{cur['name']}] {title}"
        out.append(item)
    return out


def _describe_update(cur: dict, prev: dict, names: dict, moved: bool) -> tuple[str, list[dict]]:
    """A title and the list of changes between two snapshots of a merchant. One change: the title
    says it all ("Owner A → B"); several: the title lists the fields and the list has the values."""
    dash = "—"
    changes: list[dict] = []
    checks = (
        ("owner", "owner_id", _("Owner"), _("Owner %(a)s → %(b)s")),
        ("grid", "grid_id", _("Grid"), _("Grid %(a)s → %(b)s")),
        ("name", "name", _("Merchant name"), _("Name changed: %(a)s → %(b)s")),
        ("status", "status", _("Status"), _("Status %(a)s → %(b)s")),
        ("credit_code", "credit_code", _("Credit code"), _("Credit code %(a)s → %(b)s")),
        ("industry", "industry_id", _("Industry"), _("Industry %(a)s → %(b)s")),
        ("place", "place_id", _("Place"), _("Place %(a)s → %(b)s")),
        ("address", "address", _("Address"), _("Address %(a)s → %(b)s")),
    )
    sentences = []
    for field, column, text, sentence in checks:
        if cur[column] == prev[column]:
            continue
        if field in names:
            before, after = names[field]
        elif field == "status":
            before, after = _label(MerchantStatus.choices, prev[column]), _label(MerchantStatus.choices, cur[column])
        else:
            before, after = prev[column], cur[column]
        changes.append({"field": field, "label": str(text), "from": before, "to": after})
        sentences.append(sentence % {"a": before or dash, "b": after or dash})
    if moved:
        changes.append({"field": "location", "label": str(_("Location")), "from": None, "to": None})
        sentences.append(_("Moved on the map"))
    if len(changes) == 1:
        return str(sentences[0]), changes
    if not changes:
        return str(_("Edited")), changes
    return _("Edited: %(fields)s") % {"fields": "、".join(c["label"] for c in changes)}, changes


# -- The whole ------------------------------------------------------------------------------------


def parse_limit(value) -> int:
    if value in (None, ""):
        return DEFAULT_LIMIT
    text = str(value)
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ValidationError({"limit": [_("limit must be a whole number from 1 to %(max)d.") % {"max": MAX_LIMIT}]})
    return int(text)


def merchant_timeline(*, merchant: Merchant, user, before: str | None = None, limit: int = DEFAULT_LIMIT) -> dict:
    """``{"results": [...], "next_before": cursor | None}``: the newest ``limit`` items older than
    ``before``. ``merchant`` must come from ``Merchant.objects.restrict(user)``. A fixed number of
    queries (7) whatever the number of rows."""
    cursor = Cursor.decode(before) if before else None
    items = (
        _activities(merchant, user, cursor, limit)
        + _stage_changes(merchant, cursor, limit)
        + _merchant_events(merchant, cursor, limit)
    )
    # An activity can be both the merchant's own and an event it attended: once.
    unique = {(i["type"], i["id"]): i for i in items}
    ordered = sorted(unique.values(), key=lambda i: Cursor.decode(i["cursor"]), reverse=True)
    page = ordered[:limit]
    more = len(ordered) > limit
    for item in page:
        item["at"] = timezone.localtime(item["at"])
    return {"results": page, "next_before": page[-1]["cursor"] if more and page else None}
