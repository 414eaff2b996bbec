"""A merchant's timeline: one list of everything, newest first, paged by time.

ONE statement answers a page, whatever the number of rows (no N+1), a UNION ALL of four branches,
each cut to the page size on its own index before the merge:
  * the merchant's activities (visits, calls; check-in flag, distance and accuracy; duration), with
    their photos aggregated per row (``activity_merchant_time``, photos by ``activity_id``);
  * the events it attended, only those of grids the user may see (an event belongs to its grid,
    the scoping rule for activities; the grid set comes from ``grids.scoping``);
  * its leads' stage changes, from -> to, by whom (``stage_change_lead_at``);
  * its own history from pghistory (``crm.MerchantEvent``): creation, and every update diffed with
    the previous snapshot of the same merchant (``lag()``), so it reads "owner A -> B", "grid X ->
    Y", "name changed"; updates that changed nothing a person sees (``updated_at`` only) are left
    out. The acting user comes from the pghistory context. The history of merchants merged into
    this one (crm.services.merge) is followed through the merge context
    (``{"merged_<drop id>": <keep id>}``, recursively) and shown too.
Names (users, grids, industries, places) are scalar sub-selects, not joins: the statement stays
cheap to plan, and they run for the rows of the page only.

Paging is by a cursor (``before``) that encodes the sort key of the last item shown:
(time, source rank, id), so items sharing a timestamp are neither lost nor repeated.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import connection
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from core.db import prepared_cursor
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
from crm.models import Merchant
from grids.models import Grid
from grids.scoping import UserScope, resolve_scope, scope_q

DEFAULT_LIMIT = 30
MAX_LIMIT = 100

# Source ranks: the tie-breaker between items of the same instant (higher comes first).
RANK_MERCHANT, RANK_STAGE, RANK_ACTIVITY = 0, 1, 2
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


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
        return EPOCH + datetime.timedelta(microseconds=self.at_us)


def _us(at: datetime.datetime) -> int:
    delta = at - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _before(cursor: Cursor | None, rank: int, at_col: str, id_col: str) -> tuple[str, list]:
    """SQL (and parameters) for the rows of source ``rank`` that sort after ``cursor`` (older)."""
    if cursor is None:
        return "TRUE", []
    if rank < cursor.rank:
        return f"{at_col} <= %s", [cursor.at]
    if rank == cursor.rank:
        return f"({at_col}, {id_col}) < (%s, %s)", [cursor.at, cursor.id]
    return f"{at_col} < %s", [cursor.at]


# -- The statement --------------------------------------------------------------------------------

# Snapshot columns compared with the previous event of the same merchant.
DIFFED = ("name", "credit_code", "industry_id", "address", "place_id", "grid_id", "owner_id", "status")

USER_NAME = "(SELECT COALESCE(NULLIF(x.full_name, ''), x.username) FROM grids_user x WHERE x.id = {col})"
GRID_NAME = "(SELECT x.name FROM grids_grid x WHERE x.id = {col})"
INDUSTRY_NAME = "(SELECT x.name_zh FROM crm_industry x WHERE x.id = {col})"
PLACE_NAME = "(SELECT x.name FROM grids_place x WHERE x.id = {col})"

ACTIVITY_DETAIL = """json_build_object(
    'kind', a.kind, 'merchant_id', a.merchant_id, 'title', a.title, 'event_type', a.event_type,
    'notes', a.notes, 'outcome', a.outcome, 'intent', a.intent, 'next_step', a.next_step,
    'checkin_flag', a.checkin_flag, 'distance_m', round(a.checkin_distance_m),
    'accuracy_m', round(a.checkin_accuracy_m),
    'duration_min', round(extract(epoch FROM a.checkout_at - a.occurred_at) / 60),
    'photos', (SELECT json_agg(json_build_object('id', p.id, 'kind', p.kind, 'taken_at', p.exif_taken_at)
                               ORDER BY p.id)
                 FROM crm_activityphoto p WHERE p.activity_id = a.id))"""

MERGED_KEY = "kv.key ~ '^merged_[0-9]+$' AND length(kv.key) < 26"

TIMELINE_SQL = f"""
WITH RECURSIVE merged(id) AS (
    SELECT %s::bigint
    UNION
    SELECT substr(kv.key, 8)::bigint
      FROM merged
      JOIN crm_merchantevent e ON e.pgh_obj_id = merged.id
      JOIN pghistory_context c ON c.id = e.pgh_context_id
      CROSS JOIN LATERAL jsonb_each_text(c.metadata) kv
     WHERE {MERGED_KEY} AND kv.value = merged.id::text
), ev AS (
    SELECT e.pgh_id, e.pgh_created_at, e.pgh_label, e.pgh_obj_id, e.pgh_context_id, e.location,
           {", ".join(f"e.{c}" for c in DIFFED)},
           {", ".join(f"lag(e.{c}) OVER w AS p_{c}" for c in DIFFED)}, lag(e.location) OVER w AS p_location
      FROM crm_merchantevent e
     WHERE e.pgh_obj_id IN (SELECT id FROM merged)
    WINDOW w AS (PARTITION BY e.pgh_obj_id ORDER BY e.pgh_id)
)
SELECT t.type, t.id, t.at, t.rank, t.by_id, {USER_NAME.format(col="t.by_id")}, t.detail
FROM (
    (SELECT 'activity' AS type, a.id, a.occurred_at AS at, {RANK_ACTIVITY} AS rank, a.by_id, {ACTIVITY_DETAIL} AS detail
       FROM crm_activity a
      WHERE a.merchant_id = %s AND __BEFORE_ACTIVITY__
      ORDER BY a.occurred_at DESC, a.id DESC LIMIT %s)
    UNION ALL
    (SELECT 'activity', a.id, a.occurred_at, {RANK_ACTIVITY}, a.by_id, {ACTIVITY_DETAIL}
       FROM crm_activity a
      WHERE a.id IN (SELECT ea.activity_id FROM crm_eventattendance ea WHERE ea.merchant_id = %s)
        AND a.merchant_id IS DISTINCT FROM %s AND __EVENT_SCOPE__ AND __BEFORE_ACTIVITY__
      ORDER BY a.occurred_at DESC, a.id DESC LIMIT %s)
    UNION ALL
    (SELECT 'stage_change', sc.id, sc.at, {RANK_STAGE}, sc.by_id,
            json_build_object('lead_id', sc.lead_id, 'product', l.product, 'from', sc.from_stage,
                              'to', sc.to_stage, 'activity_id', sc.activity_id)
       FROM crm_leadstagechange sc JOIN crm_lead l ON l.id = sc.lead_id
      WHERE l.merchant_id = %s AND __BEFORE_STAGE__
      ORDER BY sc.at DESC, sc.id DESC LIMIT %s)
    UNION ALL
    (SELECT 'merchant', ev.pgh_id, ev.pgh_created_at, {RANK_MERCHANT},
            CASE WHEN jsonb_typeof(c.metadata->'user') = 'number' THEN (c.metadata->>'user')::bigint END,
            json_build_object(
                'label', ev.pgh_label, 'obj', ev.pgh_obj_id,
                'cur', json_build_object({", ".join(f"'{c}', ev.{c}" for c in DIFFED)}),
                'prev', json_build_object({", ".join(f"'{c}', ev.p_{c}" for c in DIFFED)}),
                'moved', ev.pgh_label = 'update' AND ev.location IS DISTINCT FROM ev.p_location,
                'names', json_build_object(
                    'grid', {GRID_NAME.format(col="ev.grid_id")}, 'p_grid', {GRID_NAME.format(col="ev.p_grid_id")},
                    'owner', {USER_NAME.format(col="ev.owner_id")}, 'p_owner', {USER_NAME.format(col="ev.p_owner_id")},
                    'industry', {INDUSTRY_NAME.format(col="ev.industry_id")},
                    'p_industry', {INDUSTRY_NAME.format(col="ev.p_industry_id")},
                    'place', {PLACE_NAME.format(col="ev.place_id")},
                    'p_place', {PLACE_NAME.format(col="ev.p_place_id")}),
                'merged_names', (SELECT string_agg(mm.name, '、' ORDER BY mm.id)
                                   FROM jsonb_each_text(c.metadata) kv
                                   JOIN crm_merchant mm
                                     ON mm.id = CASE WHEN {MERGED_KEY} THEN substr(kv.key, 8)::bigint END
                                  WHERE kv.value = ev.pgh_obj_id::text),
                'merged_into', (SELECT mm.name FROM crm_merchant mm
                                 WHERE mm.id = CASE WHEN c.metadata->>('merged_' || ev.pgh_obj_id) ~ '^[0-9]{{1,18}}$'
                                                    THEN (c.metadata->>('merged_' || ev.pgh_obj_id))::bigint END))
       FROM ev LEFT JOIN pghistory_context c ON c.id = ev.pgh_context_id
      WHERE (ev.pgh_label <> 'update'
             OR {" OR ".join(f"ev.{c} IS DISTINCT FROM ev.p_{c}" for c in DIFFED)}
             OR ev.location IS DISTINCT FROM ev.p_location
             OR EXISTS (SELECT 1 FROM jsonb_each_text(c.metadata) kv
                         WHERE {MERGED_KEY} AND kv.value = ev.pgh_obj_id::text))
        AND __BEFORE_MERCHANT__
      ORDER BY ev.pgh_created_at DESC, ev.pgh_id DESC LIMIT %s)
) t
ORDER BY t.at DESC, t.rank DESC, t.id DESC
LIMIT %s
"""


# The page, guarded by the merchant's visibility in the same statement (no lookup query first):
# one row (visible, NULLs...) when the merchant has no items, (false, NULLs...) when it is out of
# the user's scope. Starting with SELECT (not WITH) also keeps pghistory's middleware from
# prefixing a set_config() statement to it (it skips statements that start with SELECT).
GUARDED_SQL = """
SELECT ok.visible, p.* FROM (SELECT EXISTS (__VISIBLE__) AS visible) ok
LEFT JOIN (__PAGE__) p ON ok.visible
ORDER BY p.at DESC, p.rank DESC, p.id DESC
"""


def _event_scope(user, scope: UserScope) -> tuple[str, list]:
    """Which attended events the user may see: the scoping rule for activities (an event follows
    its grid; one with a merchant follows the merchant's grid), with the grid set from
    grids.scoping, compiled to SQL once."""
    if scope.empty:
        return "FALSE", []
    q = scope_q(Grid, user, "view", scope)
    if q is None:
        return "TRUE", []
    grids_sql, grids_params = Grid.objects.filter(q).order_by().values("id").query.sql_with_params()
    sql = (
        f"((a.merchant_id IS NULL AND a.grid_id IN ({grids_sql}))"
        f" OR (a.merchant_id IS NOT NULL AND EXISTS (SELECT 1 FROM crm_merchant mm"
        f" WHERE mm.id = a.merchant_id AND mm.grid_id IN ({grids_sql}))))"
    )
    return sql, [*grids_params, *grids_params]


def _statement(merchant_id: int, user, scope: UserScope, cursor: Cursor | None, limit: int) -> tuple[str, list]:
    """The SQL and its parameters, in the order the placeholders appear."""
    before_a, pa = _before(cursor, RANK_ACTIVITY, "a.occurred_at", "a.id")
    before_s, ps = _before(cursor, RANK_STAGE, "sc.at", "sc.id")
    before_m, pm = _before(cursor, RANK_MERCHANT, "ev.pgh_created_at", "ev.pgh_id")
    events, pe = _event_scope(user, scope)
    n = limit + 1
    sql = (
        TIMELINE_SQL.replace("__BEFORE_ACTIVITY__", before_a)
        .replace("__BEFORE_STAGE__", before_s)
        .replace("__BEFORE_MERCHANT__", before_m)
        .replace("__EVENT_SCOPE__", events)
    )
    params = [
        merchant_id,  # merged (recursive)
        merchant_id,  # own activities
        *pa,
        n,
        merchant_id,  # attended events
        merchant_id,
        *pe,
        *pa,
        n,
        merchant_id,  # stage changes
        *ps,
        n,
        *pm,  # merchant history
        n,
        n,  # the page
    ]
    return sql, params


# -- Rows to items ------------------------------------------------------------------------------


def _photo_url_template() -> str | None:
    # Photos are served by the photo endpoint, which checks the user may see the merchant.
    try:
        return reverse("api:photo-file", args=[0]).replace("/0/", "/{}/")
    except NoReverseMatch:
        return None


class _Labels:
    """The translated labels of every choice list, built once per page (not once per row)."""

    def __init__(self):
        def d(choices):
            return {k: str(v) for k, v in choices}

        self.kind = d(ActivityKind.choices)
        self.event_type = d(EventType.choices)
        self.outcome = d(Outcome.choices)
        self.intent = d(Intent.choices)
        self.flag = d(CheckinFlag.choices)
        self.photo = d(PhotoKind.choices)
        self.stage = d(LeadStage.choices)
        self.product = d(ProductKind.choices)
        self.status = d(MerchantStatus.choices)


def _activity(d: dict, merchant_id: int, labels: _Labels, photo_url: str | None) -> tuple[str, dict]:
    kind = d["kind"]
    parts = [labels.kind.get(kind, kind)]
    if d["title"]:
        parts.append(d["title"])
    if d["outcome"]:
        parts.append(labels.outcome.get(d["outcome"], d["outcome"]))
    checkin = None
    if kind == ActivityKind.VISIT and (d["checkin_flag"] or d["distance_m"] is not None):
        flag = d["checkin_flag"] or None
        checkin = {
            "flag": flag,
            "flag_display": labels.flag.get(flag, "") if flag else "",
            "flagged": bool(flag) and flag != CheckinFlag.OK,
            "distance_m": None if d["distance_m"] is None else int(d["distance_m"]),
            "accuracy_m": None if d["accuracy_m"] is None else int(d["accuracy_m"]),
        }
    photos = [
        {
            "id": p["id"],
            "kind": p["kind"],
            "kind_display": labels.photo.get(p["kind"], p["kind"]),
            "taken_at": p["taken_at"],
            "url": photo_url.format(p["id"]) if photo_url else None,
        }
        for p in d["photos"] or ()
    ]
    return " · ".join(parts), {
        "kind": kind,
        "kind_display": labels.kind.get(kind, kind),
        "event_type": d["event_type"] or None,
        "event_type_display": labels.event_type.get(d["event_type"], "") if d["event_type"] else "",
        "attended": d["merchant_id"] != merchant_id,
        "title": d["title"],
        "outcome": d["outcome"] or None,
        "outcome_display": labels.outcome.get(d["outcome"], "") if d["outcome"] else "",
        "intent": d["intent"] or None,
        "intent_display": labels.intent.get(d["intent"], "") if d["intent"] else "",
        "notes": d["notes"],
        "next_step": d["next_step"],
        "checkin": checkin,
        "duration_min": None if d["duration_min"] is None else int(d["duration_min"]),
        "photos": photos,
    }


def _stage_change(d: dict, labels: _Labels) -> tuple[str, dict]:
    product = labels.product.get(d["product"], d["product"])
    to = labels.stage.get(d["to"], d["to"])
    if d["from"]:
        title = _("%(product)s lead: %(from)s → %(to)s") % {
            "product": product,
            "from": labels.stage.get(d["from"], d["from"]),
            "to": to,
        }
    else:
        title = _("New %(product)s lead: %(to)s") % {"product": product, "to": to}
    return title, {
        "lead_id": d["lead_id"],
        "product": d["product"],
        "product_display": product,
        "from": d["from"] or None,
        "from_display": labels.stage.get(d["from"], "") if d["from"] else "",
        "to": d["to"],
        "to_display": to,
        "activity_id": d["activity_id"],
    }


def _describe_update(d: dict, labels: _Labels) -> tuple[str, list[dict]]:
    """A title and the list of changes between two snapshots of a merchant. One change: the title
    says it all ("Account manager A → B"); several: the title lists the fields, the list the values."""
    cur, prev, names = d["cur"], d["prev"], d["names"]
    dash = "—"
    checks = (
        # The merchant's owner is its account manager (PersonRole "owner" is the business's owner).
        ("owner", "owner_id", _("Account manager"), _("Account manager %(a)s → %(b)s")),
        ("grid", "grid_id", _("Grid"), _("Grid %(a)s → %(b)s")),
        ("name", "name", _("Merchant name"), _("Name changed: %(a)s → %(b)s")),
        ("status", "status", _("Status"), _("Status %(a)s → %(b)s")),
        ("credit_code", "credit_code", _("Credit code"), _("Credit code %(a)s → %(b)s")),
        ("industry", "industry_id", _("Industry"), _("Industry %(a)s → %(b)s")),
        ("place", "place_id", _("Place"), _("Place %(a)s → %(b)s")),
        ("address", "address", _("Address"), _("Address %(a)s → %(b)s")),
    )
    changes: list[dict] = []
    sentences = []
    for field, column, text, sentence in checks:
        if cur[column] == prev[column]:
            continue
        if field in ("owner", "grid", "industry", "place"):
            before, after = names[f"p_{field}"], names[field]
        elif field == "status":
            before, after = labels.status.get(prev[column], prev[column]), labels.status.get(cur[column], cur[column])
        else:
            before, after = prev[column], cur[column]
        changes.append({"field": field, "label": str(text), "from": before, "to": after})
        sentences.append(sentence % {"a": before or dash, "b": after or dash})
    if d["moved"]:
        changes.append({"field": "location", "label": str(_("Location")), "from": None, "to": None})
        sentences.append(_("Moved on the map"))
    if len(changes) == 1:
        return str(sentences[0]), changes
    if not changes:
        return str(_("Edited")), changes
    return _("Edited: %(fields)s") % {"fields": "、".join(c["label"] for c in changes)}, changes


def _merchant_event(d: dict, merchant_id: int, labels: _Labels) -> tuple[str, dict]:
    changes: list[dict] = []
    if d["label"] == "insert":
        title = str(_("Merchant created"))
    else:
        title, changes = _describe_update(d, labels)
    if d["merged_names"] and d["obj"] == merchant_id:
        merged = _("Merged with %(names)s") % {"names": d["merged_names"]}
        title = merged + (f" · {title}" if changes else "")
    if d["merged_into"] and d["obj"] != merchant_id:
        title = _("Merged into %(name)s") % {"name": d["merged_into"]}
    detail = {"label": d["label"], "changes": changes}
    if d["obj"] != merchant_id:
        # History of a merchant merged into this one: say whose it was.
        detail["merchant"] = {"id": d["obj"], "name": d["cur"]["name"]}
        title = f"[{d['cur']['name']}] {title}"
    return title, detail


# -- The whole ------------------------------------------------------------------------------------


def parse_limit(value) -> int:
    if value in (None, ""):
        return DEFAULT_LIMIT
    text = str(value)
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ValidationError({"limit": [_("limit must be a whole number from 1 to %(max)d.") % {"max": MAX_LIMIT}]})
    return int(text)


def merchant_timeline(
    *,
    merchant: Merchant,
    user,
    before: str | None = None,
    limit: int = DEFAULT_LIMIT,
    scope: UserScope | None = None,
) -> dict:
    """``{"results": [...], "next_before": cursor | None}``: the newest ``limit`` items older than
    ``before``. ``merchant`` must come from ``Merchant.objects.restrict(user)``; pass the ``scope``
    that was resolved for it to save a query. One statement (two without ``scope``)."""
    cursor = Cursor.decode(before) if before else None
    scope = scope if scope is not None else resolve_scope(user, "view")
    sql, params = _statement(merchant.pk, user, scope, cursor, limit)
    # Not prepared: the statement starts with WITH, which pghistory prefixes with a command.
    with connection.cursor() as c:
        c.execute(sql, params)
        rows = c.fetchall()
    return _page(rows, merchant.pk, limit)


def merchant_timeline_if_visible(
    *, merchant_id: int, user, before: str | None = None, limit: int = DEFAULT_LIMIT
) -> dict | None:
    """The same page for the merchant ``merchant_id``, or None when it does not exist or lies
    outside ``user``'s view scope (``Merchant.objects.restrict(user)``), checked inside the one
    statement: no merchant lookup first. With the scope already resolved in the request, this is
    the request's only query of its own."""
    cursor = Cursor.decode(before) if before else None
    scope = resolve_scope(user, "view")
    visible = Merchant.objects.restrict(user, "view").filter(pk=merchant_id).order_by().values("pk")
    try:
        visible_sql, visible_params = visible.query.sql_with_params()
    except EmptyResultSet:  # no scope at all
        return None
    page_sql, page_params = _statement(merchant_id, user, scope, cursor, limit)
    sql = GUARDED_SQL.replace("__VISIBLE__", visible_sql).replace("__PAGE__", page_sql)
    with prepared_cursor() as c:
        c.execute(sql, [*visible_params, *page_params])
        rows = c.fetchall()
    if not rows or not rows[0][0]:
        return None
    return _page([row[1:] for row in rows if row[1] is not None], merchant_id, limit)


def _page(rows, merchant_id: int, limit: int) -> dict:
    labels = _Labels()
    photo_url = _photo_url_template()
    localtime = timezone.localtime
    items = []
    for kind, pk, at, rank, by_id, by_name, detail in rows[:limit]:
        item = {
            "type": kind,
            "id": pk,
            "at": localtime(at),
            "cursor": Cursor(_us(at), rank, pk).encode(),
            "by": {"id": by_id, "display": by_name} if by_id and by_name else None,
        }
        if kind == "activity":
            item["title"], item["activity"] = _activity(detail, merchant_id, labels, photo_url)
        elif kind == "stage_change":
            item["title"], item["stage_change"] = _stage_change(detail, labels)
        else:
            item["title"], item["merchant_event"] = _merchant_event(detail, merchant_id, labels)
        items.append(item)
    more = len(rows) > limit
    return {"results": items, "next_before": items[-1]["cursor"] if more and items else None}
