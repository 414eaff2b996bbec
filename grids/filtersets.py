import django_filters

from core.filters import BBoxFilter
from grids.models import Grid, Membership, Place, SubBranch


class SubBranchFilterSet(django_filters.FilterSet):
    class Meta:
        model = SubBranch
        fields = ["branch"]


class GridFilterSet(django_filters.FilterSet):
    bbox = BBoxFilter(field_name="geom")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Grid
        fields = ["sub_branch", "kind", "status"]


class PlaceFilterSet(django_filters.FilterSet):
    bbox = BBoxFilter(field_name="geom")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Place
        fields = ["grid", "kind"]


class MembershipFilterSet(django_filters.FilterSet):
    class Meta:
        model = Membership
        fields = ["user", "role", "grid", "sub_branch", "branch"]
