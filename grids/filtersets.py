import django_filters

from core.filters import BBoxFilter, IdFilter
from grids.models import ChannelContact, Grid, Membership, Place, RedrawProposal, SubBranch


class SubBranchFilterSet(django_filters.FilterSet):
    branch = IdFilter(field_name="branch_id")

    class Meta:
        model = SubBranch
        fields = ["branch"]


class GridFilterSet(django_filters.FilterSet):
    bbox = BBoxFilter(field_name="geom")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    sub_branch = IdFilter(field_name="sub_branch_id")

    class Meta:
        model = Grid
        fields = ["sub_branch", "kind", "status"]


class PlaceFilterSet(django_filters.FilterSet):
    bbox = BBoxFilter(field_name="geom")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    grid = IdFilter(field_name="grid_id")

    class Meta:
        model = Place
        fields = ["grid", "kind"]


class MembershipFilterSet(django_filters.FilterSet):
    user = IdFilter(field_name="user_id")
    grid = IdFilter(field_name="grid_id")
    sub_branch = IdFilter(field_name="sub_branch_id")
    branch = IdFilter(field_name="branch_id")

    class Meta:
        model = Membership
        fields = ["user", "role", "grid", "sub_branch", "branch"]


class RedrawProposalFilterSet(django_filters.FilterSet):
    grid = IdFilter(field_name="grid_id")
    sub_branch = IdFilter(field_name="sub_branch_id")

    class Meta:
        model = RedrawProposal
        fields = ["grid", "sub_branch", "status", "kind"]


class ChannelContactFilterSet(django_filters.FilterSet):
    grid = IdFilter(field_name="grid_id")
    place = IdFilter(field_name="place_id")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = ChannelContact
        fields = ["grid", "place", "role", "active"]
