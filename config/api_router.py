"""Every API endpoint is registered here; tests/test_api_coverage.py walks this router."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from crm.api.activities import ActivityViewSet, PhotoViewSet, TaskViewSet
from crm.api.funnel import FunnelReportViewSet, LeadStageChangeViewSet, LeadViewSet
from crm.api.people import PersonViewSet
from crm.api.sync import SyncViewSet
from crm.api.tasks_api import HandoverViewSet, NotificationViewSet
from crm.api.views import IndustryViewSet, MerchantLayerViewSet, MerchantViewSet
from grids.api.io import GridExportViewSet, GridImportViewSet, PlaceExportViewSet, PlaceImportViewSet
from grids.api.views import (
    BranchViewSet,
    ChannelContactViewSet,
    CoverageReportViewSet,
    GridLayerViewSet,
    GridViewSet,
    MembershipViewSet,
    MeView,
    PlaceLayerViewSet,
    PlaceViewSet,
    RedrawProposalViewSet,
    SubBranchViewSet,
)

router = DefaultRouter()
router.register("branches", BranchViewSet, basename="branch")
router.register("sub-branches", SubBranchViewSet, basename="subbranch")
router.register("grids", GridViewSet, basename="grid")
router.register("places", PlaceViewSet, basename="place")
router.register("memberships", MembershipViewSet, basename="membership")
# Territory (issue 3): previewed redraws, channel key persons, coverage.
router.register("redraw-proposals", RedrawProposalViewSet, basename="redrawproposal")
router.register("channel-contacts", ChannelContactViewSet, basename="channelcontact")
router.register("reports/coverage", CoverageReportViewSet, basename="report-coverage")
router.register("industries", IndustryViewSet, basename="industry")
router.register("merchants", MerchantViewSet, basename="merchant")
router.register("people", PersonViewSet, basename="person")
# The funnel (issue 4): stage moves only through POST leads/{id}/advance/.
router.register("leads", LeadViewSet, basename="lead")
router.register("stage-changes", LeadStageChangeViewSet, basename="stagechange")
router.register("activities", ActivityViewSet, basename="activity")
router.register("photos", PhotoViewSet, basename="photo")
router.register("tasks", TaskViewSet, basename="task")
router.register("reports/funnel", FunnelReportViewSet, basename="report-funnel")
# Reminders (own only) and handovers 管户移交 (issue 4).
router.register("notifications", NotificationViewSet, basename="notification")
router.register("handovers", HandoverViewSet, basename="handover")
# Offline sync for the tablet (issue 5): working set down, outbox and photos up, status.
router.register("sync", SyncViewSet, basename="sync")
# Map layers: lean GeoJSON built in SQL, separate from the detail serializers.
router.register("layers/grids", GridLayerViewSet, basename="layer-grid")
router.register("layers/places", PlaceLayerViewSet, basename="layer-place")
router.register("layers/merchants", MerchantLayerViewSet, basename="layer-merchant")
# Import (inspect -> preview -> commit, all or nothing) and export (.geojson/.xlsx) of territory (issue 3).
router.register("imports/grids", GridImportViewSet, basename="import-grid")
router.register("imports/places", PlaceImportViewSet, basename="import-place")
router.register("exports/grids", GridExportViewSet, basename="export-grid")
router.register("exports/places", PlaceExportViewSet, basename="export-place")

app_name = "api"
urlpatterns = [
    path("me/", MeView.as_view(), name="me"),
    *router.urls,
]
