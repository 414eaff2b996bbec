from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.layers import LayerViewSet
from core.api.viewsets import RestrictedReadOnlyViewSet
from grids import selectors
from grids.api.serializers import (
    BranchSerializer,
    GridDetailSerializer,
    GridSerializer,
    MembershipSerializer,
    PlaceSerializer,
    SubBranchSerializer,
)
from grids.filtersets import GridFilterSet, MembershipFilterSet, PlaceFilterSet, SubBranchFilterSet
from grids.models import Branch, Grid, Membership, Place, SubBranch


class BranchViewSet(RestrictedReadOnlyViewSet):
    queryset = Branch.objects.all()
    serializer_class = BranchSerializer


class SubBranchViewSet(RestrictedReadOnlyViewSet):
    queryset = SubBranch.objects.select_related("branch")
    serializer_class = SubBranchSerializer
    filterset_class = SubBranchFilterSet


class GridViewSet(RestrictedReadOnlyViewSet):
    queryset = Grid.objects.select_related("sub_branch")
    filterset_class = GridFilterSet

    def get_serializer_class(self):
        return GridDetailSerializer if self.action == "retrieve" else GridSerializer


class PlaceViewSet(RestrictedReadOnlyViewSet):
    queryset = Place.objects.select_related("grid")
    serializer_class = PlaceSerializer
    filterset_class = PlaceFilterSet


class MembershipViewSet(RestrictedReadOnlyViewSet):
    queryset = Membership.objects.select_related("user", "branch", "sub_branch", "grid")
    serializer_class = MembershipSerializer
    filterset_class = MembershipFilterSet


class GridLayerViewSet(LayerViewSet):
    queryset = Grid.objects.all()
    filterset_class = GridFilterSet
    layer_fields = ["id", "name", "code", "kind", "status", "sub_branch_id", "color"]

    def get_layer_queryset(self, queryset):
        return selectors.grids_with_colour(queryset)


class PlaceLayerViewSet(LayerViewSet):
    queryset = Place.objects.all()
    filterset_class = PlaceFilterSet
    layer_fields = ["id", "name", "kind", "grid_id"]


class MeView(APIView):
    """Who am I, and what do I hold: the tablet's first call after login."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(selectors.user_summary(user=request.user))
