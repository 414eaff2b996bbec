"""Every API endpoint is registered here; tests/test_api_coverage.py walks this router."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from crm.api.views import IndustryViewSet, MerchantLayerViewSet, MerchantViewSet
from grids.api.views import (
    BranchViewSet,
    GridLayerViewSet,
    GridViewSet,
    MembershipViewSet,
    MeView,
    PlaceLayerViewSet,
    PlaceViewSet,
    SubBranchViewSet,
)

router = DefaultRouter()
router.register("branches", BranchViewSet, basename="branch")
router.register("sub-branches", SubBranchViewSet, basename="subbranch")
router.register("grids", GridViewSet, basename="grid")
router.register("places", PlaceViewSet, basename="place")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("industries", IndustryViewSet, basename="industry")
router.register("merchants", MerchantViewSet, basename="merchant")
# Map layers: lean GeoJSON built in SQL, separate from the detail serializers.
router.register("layers/grids", GridLayerViewSet, basename="layer-grid")
router.register("layers/places", PlaceLayerViewSet, basename="layer-place")
router.register("layers/merchants", MerchantLayerViewSet, basename="layer-merchant")

app_name = "api"
urlpatterns = [
    path("me/", MeView.as_view(), name="me"),
    *router.urls,
]
