"""The lending funnel: a lead per merchant and product, and every stage change as a row."""

import pghistory
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from crm.choices import CLOSED_STAGES, ActivityKind, Intent, LeadSource, LeadStage, ProductKind
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
    # When the row was written (``at`` may lie in the past): the funnel rollup's watermark.
    recorded_at = models.DateTimeField(db_default=Now(), editable=False)

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
            # Rows written since the funnel rollup was built (crm.selectors.funnel).
            models.Index(fields=["recorded_at"], name="stage_change_recorded"),
        ]

    def __str__(self):
        return f"{self.from_stage or '-'} -> {self.to_stage}"


def _count(label):
    return models.PositiveIntegerField(label, default=0)


class FunnelMonthCount(models.Model):
    """Rollup: one row per grid and local (Asia/Shanghai) month with how many stage changes reached
    each stage and how many activities of each kind it had (one column per LeadStage and
    ActivityKind value: ``stage_<value>``, ``kind_<value>``). Rebuilt from the raw rows by
    ``crm.services.funnel_rollup.funnel_rollup_rebuild`` (Celery beat, every 10 minutes); the report
    adds the rows written since (``FunnelRollupState.covers_before``) from the raw tables, so it is
    never stale. A branch x 12 months report reads 30k of these rows at scale M instead of 130k
    stage changes and 1M activities."""

    grid = models.ForeignKey("grids.Grid", on_delete=models.CASCADE, related_name="+")
    month = models.DateField(help_text="First day of the local month.")
    stage_lead = _count(LeadStage.LEAD.label)
    stage_contacted = _count(LeadStage.CONTACTED.label)
    stage_visited = _count(LeadStage.VISITED.label)
    stage_interested = _count(LeadStage.INTERESTED.label)
    stage_applied = _count(LeadStage.APPLIED.label)
    stage_approved = _count(LeadStage.APPROVED.label)
    stage_disbursed = _count(LeadStage.DISBURSED.label)
    stage_lost = _count(LeadStage.LOST.label)
    kind_visit = _count(ActivityKind.VISIT.label)
    kind_call = _count(ActivityKind.CALL.label)
    kind_event = _count(ActivityKind.EVENT.label)

    class Meta:
        verbose_name = _("funnel month count")
        constraints = [
            # Also the index the report reads: one (grid, month) range per grid of the scope.
            models.UniqueConstraint(
                fields=["grid", "month"],
                name="funnel_month_count_unique",
                violation_error_message=_("One row per grid and month."),
            ),
        ]

    def __str__(self):
        return f"{self.grid_id} {self.month:%Y-%m}"


# The rollup's count columns, in the order of the choices (SQL is written from these).
ROLLUP_STAGE_COLUMNS = tuple(f"stage_{v}" for v in LeadStage.values)
ROLLUP_KIND_COLUMNS = tuple(f"kind_{v}" for v in ActivityKind.values)
assert {f.name for f in FunnelMonthCount._meta.fields} >= {*ROLLUP_STAGE_COLUMNS, *ROLLUP_KIND_COLUMNS}, (
    "a stage or activity kind was added: add its FunnelMonthCount column (and a migration)"
)


class FunnelRollupState(models.Model):
    """The one row saying what the rollup holds: every stage change and activity written (recorded
    or received) before ``covers_before``. Rows written later are read raw by the report."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    covers_before = models.DateTimeField()
    built_at = models.DateTimeField()
    build_ms = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("funnel rollup state")
        constraints = [
            models.CheckConstraint(
                condition=Q(id=1), name="funnel_rollup_state_single", violation_error_message=_("Only one state row.")
            ),
        ]

    def __str__(self):
        return f"rollup before {self.covers_before:%Y-%m-%d %H:%M}"
