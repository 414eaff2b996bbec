"""Merchants (the accounts) and the records of keeping them in the right grid."""

import pghistory
from django.conf import settings
from django.contrib.gis.db import models
from django.contrib.postgres.indexes import GinIndex, GistIndex
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from crm.choices import MerchantStatus
from crm.validators import validate_credit_code
from grids.scoping import RestrictedManager


class Industry(models.Model):
    """The configurable industry list (主力行业), seeded with the key industries."""

    code = models.SlugField(_("code"), max_length=40, unique=True)
    name_zh = models.CharField(_("Chinese name"), max_length=50)
    name_en = models.CharField(_("English name"), max_length=80)
    is_key = models.BooleanField(_("key industry"), default=False)
    sort_order = models.PositiveSmallIntegerField(default=100)

    objects = RestrictedManager()
    scope_path = "reference"

    class Meta:
        verbose_name = _("industry")
        verbose_name_plural = _("industries")
        ordering = ["sort_order", "code"]

    def __str__(self):
        return self.name_zh


@pghistory.track()
class Merchant(models.Model):
    """商户 / 小微企业: an account. It belongs to the grid its location falls in (set in the DB)."""

    name = models.CharField(_("name"), max_length=200)
    credit_code = models.CharField(
        _("unified social credit code"), max_length=18, null=True, blank=True, validators=[validate_credit_code]
    )
    industry = models.ForeignKey(
        Industry, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("industry")
    )
    location = models.PointField(_("location"), srid=4326, spatial_index=False)
    address = models.CharField(_("address"), max_length=300, blank=True)
    place = models.ForeignKey(
        "grids.Place",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="merchants",
        verbose_name=_("place"),
    )
    grid = models.ForeignKey(
        "grids.Grid",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="merchants",
        verbose_name=_("grid"),
        editable=False,
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_merchants",
        verbose_name=_("owner account manager"),
    )
    status = models.CharField(
        _("status"), max_length=10, choices=MerchantStatus.choices, default=MerchantStatus.PROSPECT
    )
    # A manual override: a manager set this merchant's grid and owner explicitly. Redraws, the
    # automatic ownership rules and the nightly stray check leave a locked merchant where it is.
    assignment_locked = models.BooleanField(
        _("assignment locked"),
        default=False,
        help_text=_("Set by a manager's explicit grid/owner assignment; kept across redraws."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = RestrictedManager()
    scope_path = "via_grid"

    class Meta:
        verbose_name = _("merchant")
        verbose_name_plural = _("merchants")
        ordering = ["id"]
        indexes = [
            # Map viewports (bbox) and grid assignment.
            GistIndex(fields=["location"], name="merchant_location_gist"),
            # Duplicate candidates by name similarity (pg_trgm %).
            GinIndex(fields=["name"], name="merchant_name_trgm", opclasses=["gin_trgm_ops"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["credit_code"],
                condition=Q(credit_code__isnull=False),
                name="merchant_credit_code_unique",
                violation_error_message=_("Another merchant already has this credit code."),
            ),
        ]

    def __str__(self):
        return self.name


class GridCheckRun(models.Model):
    """One run of the nightly check that every merchant sits in the grid its location falls in."""

    started_at = models.DateTimeField(_("started at"))
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    checked = models.PositiveIntegerField(_("merchants checked"), default=0)
    fixed = models.PositiveIntegerField(_("merchants fixed"), default=0)

    class Meta:
        verbose_name = _("grid check run")
        ordering = ["-started_at"]


class MerchantGridFix(models.Model):
    """A stray found by a check run: the merchant's grid did not match its location."""

    run = models.ForeignKey(GridCheckRun, on_delete=models.CASCADE, related_name="fixes")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="grid_fixes")
    from_grid = models.ForeignKey("grids.Grid", on_delete=models.SET_NULL, null=True, related_name="+")
    to_grid = models.ForeignKey("grids.Grid", on_delete=models.SET_NULL, null=True, related_name="+")

    class Meta:
        verbose_name = _("merchant grid fix")
