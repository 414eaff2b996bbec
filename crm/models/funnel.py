"""The lending funnel: a lead per merchant and product, and every stage change as a row."""

import pghistory
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.choices import CLOSED_STAGES, Intent, LeadSource, LeadStage, ProductKind
from grids.scoping import RestrictedManager

MONEY = {"max_digits": 14, "decimal_places": 2, "null": True, "blank": True}


class LostReason(models.Model):
    """Why a lead was lost (configurable list)."""

    code = models.SlugField(unique=True)
    name_zh = models.CharField(max_length=50)
    name_en = models.CharField(max_length=80)

    objects = RestrictedManager()
    scope_path = "reference"

    class Meta:
        verbose_name = _("lost reason")
        ordering = ["id"]

    def __str__(self):
        return self.name_zh


@pghistory.track()
class Lead(models.Model):
    """线索/商机: one merchant, one product, moving through the funnel. Stage changes only through
    crm.services.leads.lead_advance_stage, which writes a LeadStageChange."""

    merchant = models.ForeignKey("crm.Merchant", on_delete=models.CASCADE, related_name="leads")
    product = models.CharField(_("product"), max_length=20, choices=ProductKind.choices, default=ProductKind.LOAN)
    stage = models.CharField(_("stage"), max_length=12, choices=LeadStage.choices, default=LeadStage.LEAD)
    intent = models.CharField(_("intent"), max_length=6, choices=Intent.choices, blank=True)
    source = models.CharField(_("source"), max_length=12, choices=LeadSource.choices, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="leads"
    )
    amount_requested = models.DecimalField(_("amount requested"), **MONEY)
    amount_approved = models.DecimalField(_("amount approved"), **MONEY)
    amount_disbursed = models.DecimalField(_("amount disbursed"), **MONEY)
    lost_reason = models.ForeignKey(LostReason, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    lost_note = models.CharField(_("lost note"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    stage_changed_at = models.DateTimeField(_("stage changed at"), null=True, blank=True)

    objects = RestrictedManager()
    scope_path = "via_merchant"

    class Meta:
        verbose_name = _("lead")
        verbose_name_plural = _("leads")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "product"],
                condition=~Q(stage__in=CLOSED_STAGES),
                name="lead_one_open_per_product",
                violation_error_message=_("This merchant already has an open lead for this product."),
            ),
            models.CheckConstraint(
                condition=~Q(stage=LeadStage.LOST) | Q(lost_reason__isnull=False),
                name="lead_lost_has_reason",
                violation_error_message=_("A lost lead needs a reason."),
            ),
        ]
        indexes = [models.Index(fields=["owner", "stage"], name="lead_owner_stage")]

    def __str__(self):
        return f"{self.merchant} · {self.get_product_display()} · {self.get_stage_display()}"


class LeadStageChange(models.Model):
    """One move of a lead (or its creation, from_stage empty): who, when, from, to, and where the
    merchant's grid and owner were at that moment, so funnel reports need no join back in time."""

    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="stage_changes")
    from_stage = models.CharField(max_length=12, choices=LeadStage.choices, blank=True)
    to_stage = models.CharField(max_length=12, choices=LeadStage.choices)
    at = models.DateTimeField()
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    grid = models.ForeignKey("grids.Grid", on_delete=models.SET_NULL, null=True, related_name="+")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    activity = models.ForeignKey("crm.Activity", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    objects = RestrictedManager()
    # Seen by whoever sees the merchant now (history follows the merchant); reports use ``grid``.
    scope_path = "via_merchant"
    scope_merchant_field = "lead__merchant"

    class Meta:
        verbose_name = _("stage change")
        ordering = ["at", "id"]
        indexes = [
            # Funnel counts per grid(s) x period without touching the heap (PERFORMANCE.md).
            models.Index(fields=["grid", "at"], name="stage_change_grid_at", include=["to_stage"]),
            models.Index(fields=["lead", "at"], name="stage_change_lead_at"),
        ]

    def __str__(self):
        return f"{self.from_stage or '-'} -> {self.to_stage}"
