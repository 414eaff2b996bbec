"""Merchants (the accounts) and the records of keeping them in the right grid."""

import pghistory
from django.conf import settings
from django.contrib.gis.db import models
from django.contrib.postgres.indexes import GinIndex, GistIndex
from django.db.models import F, Q
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
    # Optimistic concurrency (issue 5): exposed as the API's ETag and as the sync's base_version.
    # Every save() of an existing row adds one *in the database* (F + 1, see save()), so two
    # concurrent saves never produce the same version. QuerySet.update() paths (bulk grid
    # assignment, handover's owner change) move grid/owner only and leave it alone.
    version = models.PositiveIntegerField(
        _("version"), default=1, editable=False, help_text=_("Incremented on every save of the merchant.")
    )

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

    def save(self, *args, **kwargs):
        """Saving an existing merchant increments ``version`` in the database (``F("version") + 1``
        in the UPDATE itself, so concurrent saves serialise on the row), then reads it back."""
        if self._state.adding or self.pk is None:
            return super().save(*args, **kwargs)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "version"}
        before, self.version = self.version, F("version") + 1
        try:
            super().save(*args, **kwargs)
        except BaseException:
            self.version = before
            raise
        self.version = type(self)._base_manager.filter(pk=self.pk).values_list("version", flat=True).first()


class MerchantSyncEdit(models.Model):
    """A merchant created or edited on a tablet while offline and received by ``POST /sync/``:
    the device's id for the change (idempotency: the same id again is answered "duplicate"), the
    device's clock, the server's receive time, and the version the change produced."""

    class Kind(models.TextChoices):
        CREATE = "create", _("Created offline")
        UPDATE = "update", _("Edited offline")

    client_uuid = models.UUIDField(unique=True)
    kind = models.CharField(max_length=6, choices=Kind.choices)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="sync_edits")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    base_version = models.PositiveIntegerField(null=True, blank=True)
    version = models.PositiveIntegerField()
    device_time = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    objects = RestrictedManager()
    scope_path = "via_merchant"

    class Meta:
        verbose_name = _("offline merchant edit")
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{self.kind} {self.merchant_id} v{self.version}"


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
