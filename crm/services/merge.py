"""Merging two records of the same merchant (a duplicate found after the fact).

Design (``merchants_merge``):
  * ONE transaction; both merchants locked (``SELECT ... FOR UPDATE``) and both must lie in the
    acting user's *change* scope.
  * Every foreign key pointing at ``drop`` is moved to ``keep``. The list is read from Django's
    model registry (``Merchant._meta.related_objects``), not written out by hand, so a table added
    later (a campaign list, a reminder) is moved too. History tables (pghistory events) are never
    rewritten: they are what happened.
  * Where moving would break a rule, rows are reconciled instead:
      - leads: one open lead per merchant and product. When both have an open lead for the same
        product, the one further down the funnel survives (keep's on a tie) and the other is
        folded into it: its stage changes, tasks and handover items (every foreign key to the
        lead) move to the survivor, blanks of the survivor (amounts, intent, source, owner) are
        filled from it, and the folded lead row is deleted (its pghistory events remain). No stage
        change is invented, so funnel reports count exactly the moves that happened;
      - people links: a (person, role) already on ``keep`` is not duplicated;
      - relations (both directions): a relation that would point at ``keep`` itself is dropped,
        one that already exists on ``keep`` is not duplicated;
      - event attendance: the same event and person is not listed twice;
      - blanks of ``keep`` (credit code, industry, place, address, owner if they serve keep's grid)
        are filled from ``drop``; the credit code moves (it is unique).
  * ``drop`` is NOT deleted: it stays as a row with status "closed" and its name kept, so its
    pghistory events keep pointing at a real merchant and old links resolve (to a closed merchant).
    The merge itself is recorded in the pghistory context of the transaction as
    ``{"merged_<drop id>": <keep id>}`` (one key per drop, so several merges in one context do not
    overwrite each other). ``keep`` is always saved inside that context, so its history says
    "merged with ...", and crm.selectors.timeline follows these keys (recursively) to show the
    history of every merchant merged into ``keep`` on ``keep``'s timeline.
"""

from __future__ import annotations

from collections import Counter

import pghistory
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _
from pghistory.models import Event

from crm.choices import CLOSED_STAGES, FUNNEL_ORDER, MerchantStatus
from crm.models import EventAttendance, Lead, Merchant, MerchantPerson, MerchantRelation

STAGE_RANK = {s.value: i for i, s in enumerate(FUNNEL_ORDER)}
FILLED_MERCHANT_FIELDS = ("industry", "place", "address")
FILLED_LEAD_FIELDS = ("intent", "source", "owner", "amount_requested", "amount_approved", "amount_disbursed")


def foreign_keys_to(model) -> list[tuple[type, str]]:
    """(model, field name) of every foreign key pointing at ``model``, history tables excluded."""
    out = []
    for rel in model._meta.related_objects:
        related = rel.related_model
        if rel.many_to_many or issubclass(related, Event):
            continue
        out.append((related, rel.field.name))
    return out


def _label(model, field: str) -> str:
    return f"{model._meta.label_lower}.{field}"


# -- Leads ------------------------------------------------------------------------------------------


def _fold_lead(*, survivor: Lead, folded: Lead, moved: Counter) -> None:
    for related, field in foreign_keys_to(Lead):
        n = related._base_manager.filter(**{field: folded}).update(**{field: survivor})
        moved[_label(related, field)] += n
    changed = []
    for name in FILLED_LEAD_FIELDS:
        if not getattr(survivor, name) and getattr(folded, name):
            setattr(survivor, name, getattr(folded, name))
            changed.append(name)
    if changed:
        survivor.save(update_fields=changed)
    folded.delete()


def _merge_leads(*, keep: Merchant, drop: Merchant, moved: Counter, folded: list) -> None:
    open_q = ~Q(stage__in=CLOSED_STAGES)
    keep_open = {lead.product: lead for lead in Lead.objects.select_for_update().filter(open_q, merchant=keep)}
    for lead in Lead.objects.select_for_update().filter(open_q, merchant=drop).order_by("id"):
        other = keep_open.get(lead.product)
        if other is None:
            continue
        if STAGE_RANK.get(lead.stage, -1) > STAGE_RANK.get(other.stage, -1):
            survivor, gone = lead, other
        else:
            survivor, gone = other, lead
        folded.append({"product": lead.product, "kept_lead": survivor.pk, "folded_lead": gone.pk})
        _fold_lead(survivor=survivor, folded=gone, moved=moved)
    moved[_label(Lead, "merchant")] += Lead._base_manager.filter(merchant=drop).update(merchant=keep)


# -- Rows with uniqueness rules ---------------------------------------------------------------------


def _merge_people(*, keep: Merchant, drop: Merchant, moved: Counter, dropped: Counter) -> None:
    existing = set(MerchantPerson._base_manager.filter(merchant=keep).values_list("person_id", "role"))
    for link in MerchantPerson._base_manager.filter(merchant=drop):
        if (link.person_id, link.role) in existing:
            link.delete()
            dropped[_label(MerchantPerson, "merchant")] += 1
        else:
            existing.add((link.person_id, link.role))
            link.merchant = keep
            link.save(update_fields=["merchant"])
            moved[_label(MerchantPerson, "merchant")] += 1


def _merge_relations(*, keep: Merchant, drop: Merchant, moved: Counter, dropped: Counter) -> None:
    manager = MerchantRelation._base_manager
    existing = set(
        manager.filter(Q(from_merchant=keep) | Q(to_merchant=keep)).values_list(
            "from_merchant_id", "to_merchant_id", "kind"
        )
    )
    for rel in manager.filter(Q(from_merchant=drop) | Q(to_merchant=drop)).order_by("id"):
        src = keep.pk if rel.from_merchant_id == drop.pk else rel.from_merchant_id
        dst = keep.pk if rel.to_merchant_id == drop.pk else rel.to_merchant_id
        field = "from_merchant" if rel.from_merchant_id == drop.pk else "to_merchant"
        if src == dst or (src, dst, rel.kind) in existing:
            # A relation between the two merged records, or one keep already has.
            rel.delete()
            dropped[_label(MerchantRelation, field)] += 1
            continue
        existing.add((src, dst, rel.kind))
        rel.from_merchant_id, rel.to_merchant_id = src, dst
        rel.save(update_fields=["from_merchant", "to_merchant"])
        moved[_label(MerchantRelation, field)] += 1


def _merge_attendance(*, keep: Merchant, drop: Merchant, moved: Counter, dropped: Counter) -> None:
    manager = EventAttendance._base_manager
    existing = set(manager.filter(merchant=keep).values_list("activity_id", "person_id"))
    for row in manager.filter(merchant=drop).order_by("id"):
        if (row.activity_id, row.person_id) in existing:
            row.delete()
            dropped[_label(EventAttendance, "merchant")] += 1
        else:
            existing.add((row.activity_id, row.person_id))
            row.merchant = keep
            row.save(update_fields=["merchant"])
            moved[_label(EventAttendance, "merchant")] += 1


SPECIAL = {
    (Lead, "merchant"),
    (MerchantPerson, "merchant"),
    (MerchantRelation, "from_merchant"),
    (MerchantRelation, "to_merchant"),
    (EventAttendance, "merchant"),
}


# -- The service ------------------------------------------------------------------------------------


def merchants_merge(*, keep: Merchant, drop: Merchant, by) -> dict:
    """Merge ``drop`` into ``keep`` (see the module docstring). Both must be in ``by``'s change
    scope; ``drop`` must not be closed already. Returns what was moved, deduplicated and folded."""
    if keep.pk == drop.pk:
        raise ValidationError({"drop": [_("A merchant cannot be merged with itself.")]})
    with transaction.atomic(), pghistory.context(**{f"merged_{drop.pk}": keep.pk}):
        locked = {
            m.pk: m
            for m in Merchant.objects.restrict(by, "change")
            .select_for_update(of=("self",))
            .filter(pk__in=[keep.pk, drop.pk])
            .order_by("pk")
        }
        if keep.pk not in locked:
            raise ValidationError({"keep": [_("This merchant is outside the grids you may work in.")]})
        if drop.pk not in locked:
            raise ValidationError({"drop": [_("Merchant not found.")]})
        keep, drop = locked[keep.pk], locked[drop.pk]
        if drop.status == MerchantStatus.CLOSED:
            raise ValidationError({"drop": [_("This merchant is closed (perhaps merged already).")]})

        moved: Counter = Counter()
        dropped: Counter = Counter()
        folded: list = []
        _merge_leads(keep=keep, drop=drop, moved=moved, folded=folded)
        _merge_people(keep=keep, drop=drop, moved=moved, dropped=dropped)
        _merge_relations(keep=keep, drop=drop, moved=moved, dropped=dropped)
        _merge_attendance(keep=keep, drop=drop, moved=moved, dropped=dropped)
        for related, field in foreign_keys_to(Merchant):
            if (related, field) in SPECIAL:
                continue
            moved[_label(related, field)] += related._base_manager.filter(**{field: drop}).update(**{field: keep})

        # Fill keep's blanks from drop; the credit code is unique, so it leaves drop first.
        keep_fields, drop_fields = ["updated_at"], ["status", "updated_at"]
        if not keep.credit_code and drop.credit_code:
            keep.credit_code, drop.credit_code = drop.credit_code, None
            keep_fields.append("credit_code")
            drop_fields.append("credit_code")
        for name in FILLED_MERCHANT_FIELDS:
            attname = Merchant._meta.get_field(name).attname
            if not getattr(keep, attname) and getattr(drop, attname):
                setattr(keep, attname, getattr(drop, attname))
                keep_fields.append(name)
        if not keep.owner_id and drop.owner_id and keep.grid_id:
            from crm.services.merchants import _owner_serves_grid

            if _owner_serves_grid(drop.owner_id, keep.grid_id):
                keep.owner_id = drop.owner_id
                keep_fields.append("owner")
        drop.status = MerchantStatus.CLOSED
        drop.save(update_fields=drop_fields)
        # Always saved (updated_at at least): keep's history gets an event in this merge's context.
        keep.save(update_fields=keep_fields)
        if not Merchant.objects.restrict(by, "change").filter(pk=keep.pk).exists():
            raise ValidationError({"keep": [_("This merchant is outside the grids you may work in.")]})
    return {
        "keep": keep.pk,
        "drop": drop.pk,
        "moved": {k: v for k, v in sorted(moved.items()) if v},
        "deduplicated": {k: v for k, v in sorted(dropped.items()) if v},
        "folded_leads": folded,
        "filled": [f for f in keep_fields if f != "updated_at"],
    }
