"""Organisation units, grids, places and memberships. The grid is the unit of ownership."""

import pghistory
from django.contrib.auth.models import AbstractUser
from django.contrib.gis.db import models
from django.contrib.postgres.indexes import GistIndex
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from grids.choices import BRANCH_ROLES, GRID_ROLES, SUB_BRANCH_ROLES, GridKind, GridStatus, PlaceKind, Role
from grids.scoping import RestrictedManager


class User(AbstractUser):
    """A person who logs in. What they see comes from their memberships, not from this row."""

    full_name = models.CharField(_("full name"), max_length=100, blank=True)

    def __str__(self):
        return self.full_name or self.username


class Branch(models.Model):
    """分行: a city or region, led by a regional head."""

    name = models.CharField(_("name"), max_length=100)
    code = models.CharField(_("code"), max_length=20, unique=True)

    objects = RestrictedManager()
    scope_path = "branch"

    class Meta:
        verbose_name = _("branch")
        verbose_name_plural = _("branches")
        ordering = ["code"]

    def __str__(self):
        return self.name


class SubBranch(models.Model):
    """支行: the unit a branch manager runs; its area is the union of its grids."""

    branch = models.ForeignKey(Branch, on_delete=models.PROTECT, related_name="sub_branches", verbose_name=_("branch"))
    name = models.CharField(_("name"), max_length=100)
    code = models.CharField(_("code"), max_length=20, unique=True)
    location = models.PointField(_("outlet location"), srid=4326, null=True, blank=True)
    color = models.CharField(_("map colour"), max_length=7, default="#3366cc")

    objects = RestrictedManager()
    scope_path = "sub_branch"

    class Meta:
        verbose_name = _("sub-branch")
        verbose_name_plural = _("sub-branches")
        ordering = ["code"]

    def __str__(self):
        return self.name


@pghistory.track()
class Grid(models.Model):
    """网格: a territory drawn on the map. Merchants and places inside it belong to its team."""

    sub_branch = models.ForeignKey(
        SubBranch, on_delete=models.PROTECT, related_name="grids", verbose_name=_("sub-branch")
    )
    name = models.CharField(_("name"), max_length=100)
    code = models.CharField(_("code"), max_length=30, unique=True)
    kind = models.CharField(_("type"), max_length=20, choices=GridKind.choices, default=GridKind.MIXED)
    status = models.CharField(_("status"), max_length=10, choices=GridStatus.choices, default=GridStatus.ACTIVE)
    geom = models.MultiPolygonField(_("boundary"), srid=4326, spatial_index=False)

    objects = RestrictedManager()
    scope_path = "grid"

    class Meta:
        verbose_name = _("grid")
        verbose_name_plural = _("grids")
        ordering = ["code"]
        indexes = [
            # Point-in-grid lookups and bbox map layers; without it one lookup is ~300x slower.
            GistIndex(fields=["geom"], name="grid_geom_gist"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(geom__isvalid=True),
                name="grid_geom_valid",
                violation_error_message=_("The grid boundary is not a valid polygon."),
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.code})"


class Place(models.Model):
    """A park, market, business district, community or village: a polygon or a point in a grid."""

    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("type"), max_length=20, choices=PlaceKind.choices)
    geom = models.GeometryField(_("geometry"), srid=4326, spatial_index=False)
    grid = models.ForeignKey(
        Grid, on_delete=models.SET_NULL, null=True, blank=True, related_name="places", verbose_name=_("grid")
    )

    objects = RestrictedManager()
    scope_path = "via_grid"

    class Meta:
        verbose_name = _("place")
        verbose_name_plural = _("places")
        ordering = ["name"]
        indexes = [
            # Places in a map viewport; grid assignment of places.
            GistIndex(fields=["geom"], name="place_geom_gist"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(geom__isvalid=True),
                name="place_geom_valid",
                violation_error_message=_("The place geometry is not valid."),
            ),
        ]

    def __str__(self):
        return self.name


@pghistory.track()
class Membership(models.Model):
    """A user's role over one org unit for a period. Ended memberships stay, so history survives moves."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("user"))
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    branch = models.ForeignKey(Branch, on_delete=models.CASCADE, null=True, blank=True, related_name="memberships")
    sub_branch = models.ForeignKey(
        SubBranch, on_delete=models.CASCADE, null=True, blank=True, related_name="memberships"
    )
    grid = models.ForeignKey(Grid, on_delete=models.CASCADE, null=True, blank=True, related_name="memberships")
    start_date = models.DateField(_("start date"))
    end_date = models.DateField(_("end date"), null=True, blank=True)

    objects = RestrictedManager()
    scope_path = "membership"

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        ordering = ["user_id", "start_date"]
        indexes = [models.Index(fields=["user", "end_date"], name="membership_user_active")]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(role__in=BRANCH_ROLES, branch__isnull=False, sub_branch__isnull=True, grid__isnull=True)
                    | Q(role__in=SUB_BRANCH_ROLES, branch__isnull=True, sub_branch__isnull=False, grid__isnull=True)
                    | Q(role__in=GRID_ROLES, branch__isnull=True, sub_branch__isnull=True, grid__isnull=False)
                ),
                name="membership_unit_matches_role",
                violation_error_message=_(
                    "Regional heads and mid-office hold a branch, branch managers a sub-branch, "
                    "grid leaders and account managers a grid."
                ),
            ),
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gte=models.F("start_date")),
                name="membership_dates_ordered",
                violation_error_message=_("The end date is before the start date."),
            ),
        ]

    def __str__(self):
        unit = self.branch or self.sub_branch or self.grid
        return f"{self.user} · {self.get_role_display()} · {unit}"
