"""Merchant 360: the profile of one merchant with its people, products, leads and relation counts.

Personal data is masked here (crm.pii): the profile never carries a full phone or ID number."""

from __future__ import annotations

import datetime

from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone

from crm.choices import CLOSED_STAGES, FUNNEL_ORDER, LeadStage, PersonRole
from crm.models import Lead, Merchant, MerchantPerson, ProductHolding
from crm.pii import can_view_pii, mask_id_number, mask_phone
from crm.selectors.relations import related_merchants

ROLE_ORDER = [PersonRole.OWNER, PersonRole.LEGAL_REP, PersonRole.CONTROLLER, PersonRole.SHAREHOLDER, PersonRole.CONTACT]
# A loan maturing within this many days is highlighted ("loans about to mature", 存量客户深挖).
MATURING_DAYS = 90


def _money(value) -> str | None:
    # Decimals as strings, like the serializers: a float would round a balance.
    return None if value is None else str(value)


def money_display(value) -> str:
    """¥1,234,567 (whole yuan; grouping by thousands reads the same in both languages)."""
    return "" if value is None else f"¥{value:,.0f}"


def _brief(obj) -> dict | None:
    return {"id": obj.pk, "display": str(obj)} if obj is not None else None


def merchant_people(*, merchant: Merchant) -> list[dict]:
    links = (
        MerchantPerson.objects.filter(merchant=merchant)
        .select_related("person")
        .annotate(
            role_rank=Case(
                *[When(role=r, then=Value(i)) for i, r in enumerate(ROLE_ORDER)],
                default=Value(99),
                output_field=IntegerField(),
            )
        )
        .order_by("role_rank", "person__name", "id")
    )
    people: dict[int, dict] = {}
    # One entry per person (the same person is often legal representative and shareholder), in the
    # order of their most important role.
    for link in links:
        entry = people.setdefault(
            link.person_id,
            {
                "id": link.person_id,
                "name": link.person.name,
                "roles": [],
                "phone": mask_phone(link.person.phone),
                "id_number": mask_id_number(link.person.id_number),
            },
        )
        entry["roles"].append(
            {
                "link_id": link.pk,
                "role": link.role,
                "role_display": link.get_role_display(),
                "title": link.title,
                "share_pct": _money(link.share_pct),
            }
        )
    return list(people.values())


def merchant_products(*, merchant: Merchant) -> list[dict]:
    today = timezone.localdate()
    soon = today + datetime.timedelta(days=MATURING_DAYS)
    rows = ProductHolding.objects.filter(merchant=merchant).order_by("-active", "matures_on", "id")
    return [
        {
            "id": p.pk,
            "product": p.product,
            "product_display": p.get_product_display(),
            "opened_on": p.opened_on,
            "matures_on": p.matures_on,
            "matures_soon": bool(p.active and p.matures_on and today <= p.matures_on <= soon),
            "balance": _money(p.balance),
            "balance_display": money_display(p.balance),
            "active": p.active,
        }
        for p in rows
    ]


def _lead(lead: Lead) -> dict:
    rank = [s.value for s in FUNNEL_ORDER]
    return {
        "id": lead.pk,
        "product": lead.product,
        "product_display": lead.get_product_display(),
        "stage": lead.stage,
        "stage_display": lead.get_stage_display(),
        "stage_index": rank.index(lead.stage) if lead.stage in rank else None,
        "open": lead.stage not in CLOSED_STAGES,
        "intent": lead.intent or None,
        "intent_display": lead.get_intent_display() if lead.intent else "",
        "source": lead.source or None,
        "owner": _brief(lead.owner),
        "amount_requested": _money(lead.amount_requested),
        "amount_requested_display": money_display(lead.amount_requested),
        "amount_approved": _money(lead.amount_approved),
        "amount_approved_display": money_display(lead.amount_approved),
        "amount_disbursed": _money(lead.amount_disbursed),
        "amount_disbursed_display": money_display(lead.amount_disbursed),
        "lost_reason": str(lead.lost_reason) if lead.lost_reason_id else None,
        "created_at": lead.created_at,
        "stage_changed_at": lead.stage_changed_at,
    }


def merchant_leads(*, merchant: Merchant, closed_limit: int = 5) -> dict:
    leads = list(
        Lead.objects.filter(merchant=merchant).select_related("owner", "lost_reason").order_by("-created_at", "-id")
    )
    open_ = [_lead(lead) for lead in leads if lead.stage not in CLOSED_STAGES]
    closed = [_lead(lead) for lead in leads if lead.stage in CLOSED_STAGES][:closed_limit]
    return {"open": open_, "closed": closed}


def funnel_stages() -> list[dict]:
    return [{"value": s.value, "label": str(s.label)} for s in FUNNEL_ORDER] + [
        {"value": LeadStage.LOST.value, "label": str(LeadStage.LOST.label)}
    ]


def merchant_profile(*, merchant: Merchant, user, related: dict | None = None) -> dict:
    """Everything the 360 view shows but the timeline. ``merchant`` comes from
    ``Merchant.objects.restrict(user)`` with grid, owner, industry and place selected."""
    related = related if related is not None else related_merchants(merchant=merchant, user=user)
    leads = merchant_leads(merchant=merchant)
    return {
        "merchant": {
            "id": merchant.pk,
            "name": merchant.name,
            "credit_code": merchant.credit_code,
            "industry": _brief(merchant.industry),
            "place": _brief(merchant.place),
            "grid": _brief(merchant.grid),
            "sub_branch": _brief(merchant.grid.sub_branch) if merchant.grid_id else None,
            "owner": _brief(merchant.owner),
            "status": merchant.status,
            "status_display": merchant.get_status_display(),
            "address": merchant.address,
            "location": list(merchant.location.coords) if merchant.location else None,
            "created_at": merchant.created_at,
            "updated_at": merchant.updated_at,
        },
        "people": merchant_people(merchant=merchant),
        "can_view_pii": can_view_pii(user),
        "products": merchant_products(merchant=merchant),
        "leads": leads["open"],
        "closed_leads": leads["closed"],
        "funnel_stages": funnel_stages(),
        "relation_counts": {
            **related["counts"],
            "visible": len(related["visible"]),
            "hidden": related["hidden_count"],
        },
    }
