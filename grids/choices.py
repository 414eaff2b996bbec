from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    """What a membership lets its user do, and over which org unit (see grids.scoping)."""

    REGIONAL_HEAD = "regional_head", _("Regional head")  # a branch, read + write
    MID_OFFICE = "mid_office", _("Mid-office analyst")  # a branch, read-only
    BRANCH_MANAGER = "branch_manager", _("Branch manager")  # a sub-branch
    GRID_LEADER = "grid_leader", _("Grid leader")  # one grid
    ACCOUNT_MANAGER = "account_manager", _("Account manager")  # one grid


BRANCH_ROLES = (Role.REGIONAL_HEAD, Role.MID_OFFICE)
SUB_BRANCH_ROLES = (Role.BRANCH_MANAGER,)
GRID_ROLES = (Role.GRID_LEADER, Role.ACCOUNT_MANAGER)
READ_ONLY_ROLES = (Role.MID_OFFICE,)


class GridKind(models.TextChoices):
    BUSINESS_DISTRICT = "business_district", _("Business district")
    PARK = "park", _("Park")
    MARKET = "market", _("Specialised market")
    COMMUNITY = "community", _("Community")
    AGRICULTURAL = "agricultural", _("Agricultural area")
    MIXED = "mixed", _("Mixed")


class GridStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    RETIRED = "retired", _("Retired")


class PlaceKind(models.TextChoices):
    PARK = "park", _("Park")
    MARKET = "market", _("Specialised market")
    BUSINESS_DISTRICT = "business_district", _("Business district")
    COMMUNITY = "community", _("Community")
    VILLAGE = "village", _("Village")


class OwnershipRule(models.TextChoices):
    """Who owns a merchant that falls into a grid (automatic ownership)."""

    LEADER = "leader", _("Grid leader")
    ROUND_ROBIN = "round_robin", _("Round robin among account managers")
    POOL = "pool", _("Unassigned pool")


class ChannelRole(models.TextChoices):
    """渠道关键人: the external part of a grid team."""

    MARKET_OFFICE = "market_office", _("Market management office")
    PARK_ADMIN = "park_admin", _("Park administration")
    ASSOCIATION_HEAD = "association_head", _("Association or chamber head")
    COMMUNITY_OFFICE = "community_office", _("Community or village office")
    GOVERNMENT = "government", _("Government channel")
    OTHER = "other", _("Other")


class ProposalKind(models.TextChoices):
    REDRAW = "redraw", _("Redraw")
    SPLIT = "split", _("Split")
    MERGE = "merge", _("Merge")
    CREATE = "create", _("New grid")


class ProposalStatus(models.TextChoices):
    PROPOSED = "proposed", _("Proposed")
    APPLIED = "applied", _("Applied")
    DISCARDED = "discarded", _("Discarded")
