"""Duplicate candidates for a merchant about to be created (or imported).

Three reasons, each answered by an index in ONE statement:
  * credit code: exact (the unique index ``merchant_credit_code_unique``);
  * phone: exact, on the phone of a person linked to the merchant (index ``person_phone``);
  * name: pg_trgm similarity >= settings.DUPLICATE_NAME_SIMILARITY (GIN ``merchant_name_trgm`` through
    the ``%`` operator, its threshold set for this transaction only) within
    settings.DUPLICATE_RADIUS_M metres of the location: a box in degrees that covers the radius lets
    the GiST index ``merchant_location_gist`` cut the rows, then the exact distance is measured on
    the geography type (metres on the spheroid, no projection to pick).

Closed merchants (gone, or merged into another) are not candidates by phone or name; by credit code
they are, since the unique constraint would refuse the code anyway.

Scope: a candidate the user cannot see is reported only as "exists in another grid" with the
reasons that matched, never its name, id, location or grid.
"""

from __future__ import annotations

import math

from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from crm.choices import MerchantStatus
from crm.models import Merchant
from crm.pii import normalize_phone

MAX_CANDIDATES = 20
REASON_SCORE = {"credit_code": 1.0, "phone": 0.9}
METRES_PER_DEGREE = 111_320.0


def reason_label(code: str) -> str:
    return {
        "credit_code": _("Same credit code"),
        "phone": _("Same phone number"),
        "name": _("Similar name nearby"),
    }[code]


def _sql(*, credit_code, phones, name, point) -> tuple[str, dict]:
    parts, params = [], {}
    if credit_code:
        parts.append(
            "SELECT m.id, 'credit_code', NULL::float8, NULL::float8 FROM crm_merchant m WHERE m.credit_code = %(code)s"
        )
        params["code"] = credit_code
    if phones:
        parts.append(
            """SELECT DISTINCT mp.merchant_id, 'phone', NULL::float8, NULL::float8
                 FROM crm_person p
                 JOIN crm_merchantperson mp ON mp.person_id = p.id
                 JOIN crm_merchant m ON m.id = mp.merchant_id AND m.status <> %(closed)s
                WHERE p.phone = ANY(%(phones)s)"""
        )
        params["phones"] = phones
    if name and point is not None:
        lon, lat = point.coords
        radius = float(settings.DUPLICATE_RADIUS_M)
        # Degrees of longitude are the shorter ones away from the equator: size the box by them.
        deg = radius / (METRES_PER_DEGREE * max(math.cos(math.radians(lat)), 0.01)) * 1.05
        parts.append(
            """(SELECT m.id, 'name', similarity(m.name, %(name)s), ST_Distance(m.location::geography, pt.g::geography)
                  FROM crm_merchant m, (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) AS g) pt
                 WHERE m.name %% %(name)s AND similarity(m.name, %(name)s) >= %(threshold)s
                   AND m.location && ST_Expand(pt.g, %(deg)s)
                   AND ST_DWithin(m.location::geography, pt.g::geography, %(radius)s)
                   AND m.status <> %(closed)s
                 ORDER BY similarity(m.name, %(name)s) DESC
                 LIMIT %(max)s)"""
        )
        params.update({"name": name, "lon": float(lon), "lat": float(lat), "deg": deg, "radius": radius})
    params.update(
        {"closed": MerchantStatus.CLOSED, "max": MAX_CANDIDATES, "threshold": float(settings.DUPLICATE_NAME_SIMILARITY)}
    )
    return " UNION ALL ".join(parts), params


@sensitive_variables()
def merchant_duplicate_candidates(
    *,
    name: str,
    credit_code: str | None = None,
    phone: str | None = None,
    location=None,
    exclude_id: int | None = None,
    user=None,
) -> dict:
    """Candidates for a merchant with these details:
    ``{"candidates": [...], "hidden": [...], "hidden_count": n}``, best first.

    ``candidates`` are merchants ``user`` may see, with id, name, grid, a score in [0, 1] and the
    reasons (code, label; for "name" also the similarity and the distance in metres).
    ``hidden`` are the others, reduced to their reasons and score. Without ``user`` every candidate
    is in ``candidates`` (imports and other trusted callers)."""
    name = (name or "").strip()
    credit_code = (credit_code or "").strip().upper() or None
    raw_phone = (phone or "").strip()
    phones = sorted({p for p in (raw_phone, normalize_phone(raw_phone)) if p})
    sql, params = _sql(credit_code=credit_code, phones=phones, name=name, point=location)
    if not sql:
        return {"candidates": [], "hidden": [], "hidden_count": 0}
    with transaction.atomic(), connection.cursor() as cursor:
        # The index answers ``%`` with this threshold; set for this statement's transaction and put
        # back after, so a caller's own ``%`` queries in the same transaction are not affected.
        # missing_ok: the setting only exists once pg_trgm is loaded in this session (0.3 is its default).
        cursor.execute("SELECT COALESCE(current_setting('pg_trgm.similarity_threshold', true), '0.3')")
        previous = cursor.fetchone()[0]
        cursor.execute("SELECT set_config('pg_trgm.similarity_threshold', %s, true)", [str(params["threshold"])])
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        cursor.execute("SELECT set_config('pg_trgm.similarity_threshold', %s, true)", [previous])

    found: dict[int, dict] = {}
    for merchant_id, code, similarity, distance in rows:
        if merchant_id == exclude_id:
            continue
        entry = found.setdefault(merchant_id, {"reasons": [], "score": 0.0})
        if any(r["code"] == code for r in entry["reasons"]):
            continue
        reason = {"code": code, "label": reason_label(code)}
        if code == "name":
            radius = float(settings.DUPLICATE_RADIUS_M)
            reason.update({"similarity": round(similarity, 2), "distance_m": round(distance)})
            score = 0.6 * similarity + 0.3 * max(0.0, 1 - distance / radius)
        else:
            score = REASON_SCORE[code]
        entry["reasons"].append(reason)
        entry["score"] = max(entry["score"], score)
    for entry in found.values():
        # Every further reason that agrees makes it likelier.
        entry["score"] = round(min(1.0, entry["score"] + 0.05 * (len(entry["reasons"]) - 1)), 2)

    if not found:
        return {"candidates": [], "hidden": [], "hidden_count": 0}
    merchants = Merchant.objects.restrict(user) if user is not None else Merchant.objects.all()
    visible = {
        m.pk: m
        for m in merchants.filter(pk__in=list(found))
        .select_related("grid", "owner")
        .only(
            "id",
            "name",
            "address",
            "status",
            "grid__id",
            "grid__name",
            "grid__code",
            "owner__id",
            "owner__username",
            "owner__full_name",
        )
    }
    candidates, hidden = [], []
    for merchant_id, entry in sorted(found.items(), key=lambda kv: (-kv[1]["score"], kv[0])):
        m = visible.get(merchant_id)
        if m is None:
            hidden.append(
                {
                    "in_scope": False,
                    "message": _("A matching merchant exists in another grid."),
                    "score": entry["score"],
                    "reasons": [{"code": r["code"], "label": r["label"]} for r in entry["reasons"]],
                }
            )
            continue
        candidates.append(
            {
                "in_scope": True,
                "id": m.pk,
                "name": m.name,
                "address": m.address,
                "status": m.status,
                "status_display": m.get_status_display(),
                "grid": {"id": m.grid_id, "display": str(m.grid)} if m.grid_id else None,
                "owner": {"id": m.owner_id, "display": str(m.owner)} if m.owner_id else None,
                "url": reverse("merchant-detail", args=[m.pk]),
                "score": entry["score"],
                "reasons": entry["reasons"],
            }
        )
    return {"candidates": candidates, "hidden": hidden, "hidden_count": len(hidden)}
