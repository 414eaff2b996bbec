"""Organisation units, grids, places and memberships. The grid is the unit of ownership."""

import pghistory
from django.contrib.auth.models import AbstractUser
from django.contrib.gis.db import models
from django.contrib.postgres.indexes import GistIndex
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from grids.choices import (
    BRANCH_ROLES,
    GRID_ROLES,
    SUB_BRANCH_ROLES,
    ChannelRole,
    GridKind,
    GridStatus,
    OwnershipRule,
    PlaceKind,
    ProposalKind,
    ProposalStatus,
    Role,
)
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
    ownership_rule = models.CharField(
        _("ownership rule"),
        max_length=12,
        choices=OwnershipRule.choices,
        default=OwnershipRule.LEADER,
        help_text=_("Who owns a merchant that falls into this grid."),
    )
    # Bumped on every change of boundary or metadata (a GridVersion row per value): a redraw
    # proposal remembers the versions it was computed from and refuses to apply when they moved.
    version = models.PositiveIntegerField(_("version"), default=1)

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


class GridVersion(models.Model):
    """One kept state of a grid (boundary and metadata), written for every change; never edited."""

    grid = models.ForeignKey(Grid, on_delete=models.CASCADE, related_name="versions", verbose_name=_("grid"))
    number = models.PositiveIntegerField(_("version"))
    geom = models.MultiPolygonField(_("boundary"), srid=4326, spatial_index=False)
    name = models.CharField(_("name"), max_length=100)
    code = models.CharField(_("code"), max_length=30)
    kind = models.CharField(_("type"), max_length=20, choices=GridKind.choices)
    status = models.CharField(_("status"), max_length=10, choices=GridStatus.choices, default=GridStatus.ACTIVE)
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("created by")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    note = models.CharField(_("note"), max_length=200, blank=True)

    objects = RestrictedManager()
    scope_path = "via_grid"

    class Meta:
        verbose_name = _("grid version")
        verbose_name_plural = _("grid versions")
        ordering = ["grid_id", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["grid", "number"],
                name="grid_version_unique",
                violation_error_message=_("This grid already has a version with this number."),
            ),
        ]

    def __str__(self):
        return f"{self.code} v{self.number}"


@pghistory.track()
class ChannelContact(models.Model):
    """渠道关键人: an external key person of a grid team (a market office, a park admin, an
    association head). The phone number is personal data: masked in every API answer."""

    grid = models.ForeignKey(Grid, on_delete=models.CASCADE, related_name="channel_contacts", verbose_name=_("grid"))
    place = models.ForeignKey(
        Place,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="channel_contacts",
        verbose_name=_("place"),
    )
    name = models.CharField(_("name"), max_length=100)
    organisation = models.CharField(_("organisation"), max_length=200, blank=True)
    role = models.CharField(_("role"), max_length=20, choices=ChannelRole.choices, default=ChannelRole.OTHER)
    title = models.CharField(_("title"), max_length=100, blank=True)
    phone = models.CharField(_("phone"), max_length=20, blank=True)
    notes = models.TextField(_("notes"), blank=True)
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    objects = RestrictedManager()
    scope_path = "via_grid"

    class Meta:
        verbose_name = _("channel key person")
        verbose_name_plural = _("channel key persons")
        ordering = ["grid_id", "name", "id"]

    def __str__(self):
        return f"{self.name} · {self.organisation}" if self.organisation else self.name


class RedrawProposal(models.Model):
    """A previewed change of territory (redraw, split or merge) with the moves it implies.

    ``shapes`` are the proposed boundaries: ``[{"grid_id": id or null (a new grid), "geom": hex EWKB
    or null (the grid is retired), "name", "code", "kind"}]``. ``merchant_moves`` and
    ``place_moves`` are the rows that change grid, computed at preview time; applying writes exactly
    these. ``grid_versions`` are the versions of every grid the preview read: when any of them
    moved since, the proposal is stale and refuses to apply."""

    kind = models.CharField(_("kind"), max_length=10, choices=ProposalKind.choices, default=ProposalKind.REDRAW)
    status = models.CharField(
        _("status"), max_length=10, choices=ProposalStatus.choices, default=ProposalStatus.PROPOSED
    )
    sub_branch = models.ForeignKey(
        SubBranch, on_delete=models.CASCADE, related_name="redraw_proposals", verbose_name=_("sub-branch")
    )
    grid = models.ForeignKey(
        Grid,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="redraw_proposals",
        verbose_name=_("grid"),
    )
    shapes = models.JSONField(_("proposed boundaries"), default=list)
    grid_versions = models.JSONField(default=dict)
    merchant_moves = models.JSONField(default=list)
    place_moves = models.JSONField(default=list)
    summary = models.JSONField(default=dict)
    overlaps = models.JSONField(default=list)
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("created by")
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    decided_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("decided by")
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)

    objects = RestrictedManager()
    scope_path = "territory_plan"

    class Meta:
        verbose_name = _("redraw proposal")
        verbose_name_plural = _("redraw proposals")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk}"


class RedrawMove(models.Model):
    """One merchant a proposal moves, written at preview time so that applying is one
    ``UPDATE … FROM grids_redrawmove`` (no JSON to load and ship back, and the stale checks of the
    moved rows ride in that UPDATE's ``WHERE``). ``merchant_moves`` on the proposal keeps the
    display copy (names, coordinates) for the diff.

    Plain ids, not foreign keys: ``grids`` may not depend on ``crm`` (the merchant), and
    ``to_grid_id`` may be the key of a grid the proposal creates (``redraw.NEW_BASE`` + n)."""

    # No index of its own: the unique (proposal, merchant_id) index serves lookups by proposal.
    proposal = models.ForeignKey(RedrawProposal, on_delete=models.CASCADE, related_name="moves", db_index=False)
    merchant_id = models.BigIntegerField()
    from_grid_id = models.BigIntegerField(null=True)
    to_grid_id = models.BigIntegerField(null=True)
    to_owner_id = models.BigIntegerField(null=True)
    locked = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("redraw move")
        verbose_name_plural = _("redraw moves")
        constraints = [
            models.UniqueConstraint(
                fields=["proposal", "merchant_id"],
                name="redrawmove_once_per_merchant",
                violation_error_message=_("A proposal moves a merchant at most once."),
            )
        ]
