"""The lending funnel: creating a lead and moving it through its stages, one service each.

Every stage change goes through ``lead_advance_stage``, which writes a LeadStageChange row (who,
when, from, to, and the merchant's grid and the lead's owner at that moment) in the same
transaction as the lead itself. No signals: the history is written here, explicitly."""

from __future__ import annotations

import datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from crm.choices import CLOSED_STAGES, FUNNEL_ORDER, LeadStage
from crm.models import Activity, EventAttendance, Lead, LeadStageChange, LostReason, Merchant

#: Position of each open/closed funnel stage (lost is outside the order).
STAGE_RANK = {stage.value: i for i, stage in enumerate(FUNNEL_ORDER)}

#: The amount a lead must carry once it has reached a stage.
AMOUNT_FOR_STAGE = {
    LeadStage.APPLIED: "amount_requested",
    LeadStage.APPROVED: "amount_approved",
    LeadStage.DISBURSED: "amount_disbursed",
}

#: How far a client's clock may run ahead of ours before a time counts as "in the future".
CLOCK_SKEW = datetime.timedelta(minutes=5)


def _check_amount(name: str, value) -> Decimal | None:
    if value is None:
        return None
    try:
        value = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise ValidationError({name: [_("Enter a number.")]}) from None
    if not value.is_finite() or value <= 0:
        raise ValidationError({name: [_("An amount must be greater than zero.")]})
    return value


def _check_owner(*, owner, merchant: Merchant) -> None:
    # Same rule as a merchant's owner: a lead's owner works in the merchant's grid.
    from crm.services.merchants import _owner_serves_grid

    if not _owner_serves_grid(owner.pk, merchant.grid_id):
        raise ValidationError({"owner": [_("The owner is not a member of the merchant's grid.")]})


def lead_create(
    *,
    merchant: Merchant,
    product: str,
    by,
    intent: str = "",
    source: str = "",
    amount_requested=None,
    owner=None,
) -> Lead:
    """Open a lead for ``merchant`` and ``product`` at stage "lead", owned by ``owner`` (default:
    the merchant's owner), and record its creation as a stage change from "" to "lead"."""
    now = timezone.now()
    with transaction.atomic():
        # Lock the merchant: its grid is copied into the history, and two creations of the same
        # product's lead queue here instead of racing to the unique constraint.
        merchants = Merchant.objects.restrict(by, "change").select_for_update(of=("self",))
        merchant = merchants.select_related("owner").filter(pk=merchant.pk).first()
        if merchant is None:
            raise ValidationError({"merchant": [_("You may not work on this merchant.")]})
        if merchant.grid_id is None:
            raise ValidationError({"merchant": [_("The merchant lies in no grid.")]})
        if owner is None:
            owner = merchant.owner
        else:
            _check_owner(owner=owner, merchant=merchant)
        if Lead.objects.filter(merchant=merchant, product=product).exclude(stage__in=CLOSED_STAGES).exists():
            raise ValidationError({"product": [_("This merchant already has an open lead for this product.")]})
        lead = Lead(
            merchant=merchant,
            product=product,
            stage=LeadStage.LEAD,
            intent=intent or "",
            source=source or "",
            owner=owner,
            amount_requested=_check_amount("amount_requested", amount_requested),
            stage_changed_at=now,
        )
        lead.full_clean()
        lead.save()
        LeadStageChange.objects.create(
            lead=lead,
            from_stage="",
            to_stage=LeadStage.LEAD,
            at=now,
            by=by,
            grid_id=merchant.grid_id,
            owner_id=lead.owner_id,
        )
        if not Lead.objects.restrict(by, "add").filter(pk=lead.pk).exists():
            raise ValidationError({"merchant": [_("You may not work on this merchant.")]})
    return lead


def _transition_error(from_stage: str, to_stage: str) -> str | None:
    """Why ``from_stage`` -> ``to_stage`` is illegal, or None when it is allowed."""
    labels = dict(LeadStage.choices)
    params = {"from": labels.get(from_stage, from_stage), "to": labels.get(to_stage, to_stage)}
    if from_stage == to_stage:
        return _("The lead is already at stage “%(to)s”.") % params
    if from_stage == LeadStage.DISBURSED:
        return _("A disbursed lead is closed: it cannot move to “%(to)s”.") % params
    if from_stage == LeadStage.LOST:
        if to_stage == LeadStage.LEAD:
            return None
        return _("A lost lead can only be reopened (moved back to “%(lead)s”), not moved to “%(to)s”.") % {
            **params,
            "lead": labels[LeadStage.LEAD],
        }
    if to_stage == LeadStage.LOST:
        return None
    if STAGE_RANK[to_stage] < STAGE_RANK[from_stage]:
        return _("A lead cannot move back from “%(from)s” to “%(to)s”.") % params
    return None


def lead_advance_stage(
    *,
    lead: Lead,
    to_stage: str,
    by,
    activity: Activity | None = None,
    lost_reason: LostReason | None = None,
    lost_note: str = "",
    amount_requested=None,
    amount_approved=None,
    amount_disbursed=None,
    at: datetime.datetime | None = None,
) -> Lead:
    """Move ``lead`` to ``to_stage`` and record the move.

    Legal moves: forward along the funnel (skipping stages is allowed), any open stage to lost
    (with a reason), lost back to lead (reopen). Reaching applied / approved / disbursed needs the
    amount requested / approved / disbursed. The lead row is locked (SELECT ... FOR UPDATE) so
    concurrent moves are serialised: the second one sees the first one's stage. Returns the lead
    as saved (``lead`` is updated too)."""
    if to_stage not in LeadStage.values:
        raise ValidationError({"to_stage": [_("Unknown stage.")]})
    now = timezone.now()
    at = at or now
    if at > now + CLOCK_SKEW:
        raise ValidationError({"at": [_("A stage change cannot be in the future.")]})
    amounts = {
        "amount_requested": _check_amount("amount_requested", amount_requested),
        "amount_approved": _check_amount("amount_approved", amount_approved),
        "amount_disbursed": _check_amount("amount_disbursed", amount_disbursed),
    }
    with transaction.atomic():
        locked = (
            Lead.objects.restrict(by, "change")
            .select_for_update(of=("self",))
            .select_related("merchant")
            .filter(pk=lead.pk)
            .first()
        )
        if locked is None:
            raise PermissionDenied(_("You may not change this lead."))
        from_stage = locked.stage
        problem = _transition_error(from_stage, to_stage)
        if problem:
            raise ValidationError({"to_stage": [problem]})
        if locked.stage_changed_at and at < locked.stage_changed_at:
            raise ValidationError({"at": [_("A stage change cannot be earlier than the lead's last one.")]})

        if to_stage == LeadStage.LOST:
            if lost_reason is None:
                raise ValidationError({"lost_reason": [_("A lost lead needs a reason.")]})
            locked.lost_reason = lost_reason
            locked.lost_note = lost_note or ""
        elif lost_reason is not None or lost_note:
            raise ValidationError({"lost_reason": [_("A reason is given only when the lead is lost.")]})

        if from_stage == LeadStage.LOST:
            # Reopen: the reason stays in the lead's audit history, not on the open lead.
            locked.lost_reason = None
            locked.lost_note = ""
            if (
                Lead.objects.filter(merchant_id=locked.merchant_id, product=locked.product)
                .exclude(stage__in=CLOSED_STAGES)
                .exclude(pk=locked.pk)
                .exists()
            ):
                raise ValidationError(
                    {"to_stage": [_("This merchant already has another open lead for this product.")]}
                )

        reached = STAGE_RANK.get(to_stage, -1)
        for stage, field in AMOUNT_FOR_STAGE.items():
            given = amounts[field]
            if given is not None:
                if to_stage == LeadStage.LOST or reached < STAGE_RANK[stage]:
                    raise ValidationError(
                        {field: [_("This amount is set when the lead reaches “%(stage)s”.") % {"stage": stage.label}]}
                    )
                setattr(locked, field, given)
            if reached >= STAGE_RANK[stage] and getattr(locked, field) is None:
                raise ValidationError({field: [_("Moving to “%(stage)s” needs this amount.") % {"stage": stage.label}]})

        if activity is not None and not _activity_concerns(activity, locked.merchant_id):
            raise ValidationError({"activity": [_("The activity does not concern this lead's merchant.")]})

        locked.stage = to_stage
        locked.stage_changed_at = at
        locked.full_clean(exclude=["merchant", "owner", "lost_reason"])
        locked.save()
        LeadStageChange.objects.create(
            lead=locked,
            from_stage=from_stage,
            to_stage=to_stage,
            at=at,
            by=by,
            grid_id=locked.merchant.grid_id,
            owner_id=locked.owner_id,
            activity=activity,
        )
    for field in (
        "stage",
        "stage_changed_at",
        "lost_reason_id",
        "lost_note",
        "amount_requested",
        "amount_approved",
        "amount_disbursed",
    ):
        setattr(lead, field, getattr(locked, field))
    return locked


def _activity_concerns(activity: Activity, merchant_id: int) -> bool:
    if activity.merchant_id is not None:
        return activity.merchant_id == merchant_id
    return EventAttendance.objects.filter(activity=activity, merchant_id=merchant_id).exists()
