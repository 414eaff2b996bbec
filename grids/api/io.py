"""API: import grids and places from files, and export them.

Imports are three stateless steps on the same multipart upload (the file is sent again each
time; nothing is kept on the server between steps):

* ``POST imports/{grids,places}/inspect/``: the file's fields, feature count, a few rows and a
  suggested field mapping;
* ``POST imports/{grids,places}/preview/``: the row-by-row report (errors with reason and spot,
  overlaps with which grid and how many m²) and the rows as GeoJSON for the map;
* ``POST imports/{grids,places}/commit/``: all rows created in one transaction, or a 400 with the
  report and nothing saved.
``GET imports/{grids,places}/`` lists the sub-branches the user may import into.

Exports: ``GET exports/grids.geojson``, ``exports/grids.xlsx`` (and the same for places), through
restrict() and the shared filtersets (``?sub_branch=``, ``?kind=``, ``?bbox=``...).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from core.api.viewsets import RestrictedViewSetMixin
from core.filters import IdFilter
from grids.filtersets import GridFilterSet, PlaceFilterSet
from grids.io import exports
from grids.io.imports import (
    GRIDS,
    PLACES_TARGET,
    ImportRefused,
    can_import,
    check_mapping,
    grids_import,
    grids_import_report,
    import_sub_branches,
    inspect,
    places_import,
    places_import_report,
    read,
)
from grids.models import Grid, Place, SubBranch

# -- serializers ------------------------------------------------------------------------------


class GridMappingSerializer(serializers.Serializer):
    """Which field of the file holds each value (``null``: not in the file)."""

    name = serializers.CharField(help_text="File field holding the grid's name (名称).")
    code = serializers.CharField(help_text="File field holding the grid's unique code (编码).")
    kind = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="File field holding the type: a value or a Chinese label (商圈/园区/专业市场/社区/农区/混合). "
        "Null: every grid is 'mixed'.",
    )


class PlaceMappingSerializer(serializers.Serializer):
    """Which field of the file holds each value."""

    name = serializers.CharField(help_text="File field holding the place's name.")
    kind = serializers.CharField(
        help_text="File field holding the type: a value or a Chinese label (园区/专业市场/商圈/社区/行政村)."
    )


class MappingField(serializers.JSONField):
    """A JSON object sent as one multipart form field (``mapping={"name": "名称", ...}``)."""

    def __init__(self, **kwargs):
        super().__init__(binary=True, **kwargs)

    def to_internal_value(self, data):
        try:
            value = super().to_internal_value(data)
        except RecursionError:
            self.fail("invalid")
        if not isinstance(value, dict):
            raise serializers.ValidationError(_("The mapping must be a JSON object."))
        return value


@extend_schema_field(GridMappingSerializer)
class GridMappingField(MappingField):
    pass


@extend_schema_field(PlaceMappingSerializer)
class PlaceMappingField(MappingField):
    pass


@extend_schema_field(OpenApiTypes.INT)
class ImportSubBranchField(serializers.PrimaryKeyRelatedField):
    """A sub-branch the user may import into; any other id "does not exist"."""

    def get_queryset(self):
        request = self.context.get("request")
        if request is None or not request.user.is_authenticated:
            return SubBranch.objects.none()
        return import_sub_branches(request.user)


@extend_schema_field({"type": "string", "format": "binary"})
class UploadField(serializers.FileField):
    """An uploaded file, documented as binary (with COMPONENT_SPLIT_REQUEST off drf-spectacular
    would describe a FileField by its read form, a URI)."""


class ImportFileSerializer(serializers.Serializer):
    file = UploadField(
        help_text="A .geojson/.json (WGS 84), a .kml, or a .zip holding one shapefile (.shp, .shx, .dbf, "
        "and .prj for any CRS; without .prj WGS 84 is assumed)."
    )


class GridPreviewSerializer(ImportFileSerializer):
    sub_branch = ImportSubBranchField()
    mapping = GridMappingField()
    accept_overlaps = serializers.BooleanField(
        default=False, help_text="Import even though rows overlap the sub-branch's grids or each other."
    )


class PlacePreviewSerializer(ImportFileSerializer):
    sub_branch = ImportSubBranchField(help_text="Every place must lie in one of this sub-branch's grids.")
    mapping = PlaceMappingField()


class ImportTargetSerializer(serializers.ModelSerializer):
    class Meta:
        model = SubBranch
        fields = ["id", "code", "name"]


class InspectSerializer(serializers.Serializer):
    format = serializers.CharField(help_text="geojson, kml or shapefile")
    fields = serializers.ListField(child=serializers.CharField())
    feature_count = serializers.IntegerField()
    sample = serializers.ListField(child=serializers.DictField(), help_text="The first rows' attributes.")
    suggested_mapping = serializers.DictField(child=serializers.CharField(allow_null=True))
    warnings = serializers.ListField(child=serializers.CharField())


class RowErrorSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="geom, name, code, kind ...")
    message = serializers.CharField()
    spot = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="[lon, lat] where the geometry breaks."
    )


class OverlapSerializer(serializers.Serializer):
    grid_id = serializers.IntegerField()
    code = serializers.CharField()
    name = serializers.CharField()
    area_m2 = serializers.FloatField()


class FileOverlapSerializer(serializers.Serializer):
    row = serializers.IntegerField()
    area_m2 = serializers.FloatField()


class ReportRowSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="1-based feature number in the file.")
    status = serializers.CharField(help_text="ok, error or overlap")
    name = serializers.CharField(allow_null=True)
    code = serializers.CharField(required=False, help_text="Grids only.")
    kind = serializers.CharField(allow_null=True)
    errors = RowErrorSerializer(many=True)
    overlaps = OverlapSerializer(many=True, required=False, help_text="Grids only: existing sibling grids.")
    file_overlaps = FileOverlapSerializer(many=True, required=False, help_text="Grids only: other rows.")
    grid = serializers.DictField(required=False, allow_null=True, help_text="Places only: {id, code}.")


class ReportSerializer(serializers.Serializer):
    detail = serializers.CharField(required=False, help_text="Why the commit was refused.")
    target = serializers.CharField()
    format = serializers.CharField()
    fields = serializers.ListField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField())
    row_count = serializers.IntegerField()
    error_count = serializers.IntegerField()
    overlap_count = serializers.IntegerField()
    can_commit = serializers.BooleanField(required=False)
    rows = ReportRowSerializer(many=True)
    geojson = serializers.DictField(help_text="The rows as a GeoJSON FeatureCollection, for the map preview.")


class CommitSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    ids = serializers.ListField(child=serializers.IntegerField())


# -- imports ----------------------------------------------------------------------------------


class CanImport(permissions.BasePermission):
    """Reading the import targets is open to any user (an empty list for most); importing is for
    those who may draw grids (branch managers, regional heads)."""

    message = gettext_lazy("Only branch managers and regional heads can import grids and places.")

    def has_permission(self, request, view):
        return request.method in permissions.SAFE_METHODS or can_import(request.user)


def _check_length(request) -> None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.IMPORT_MAX_BYTES + 1024 * 1024:  # the file plus the form fields
        raise serializers.ValidationError(
            {"file": [_("The file is larger than %(max)d MB.") % {"max": settings.IMPORT_MAX_BYTES // (1024 * 1024)}]}
        )


class ImportViewSet(RestrictedViewSetMixin, viewsets.GenericViewSet):
    queryset = SubBranch.objects.all()
    serializer_class = ImportTargetSerializer
    permission_classes = [permissions.IsAuthenticated, CanImport]
    parser_classes = [MultiPartParser]
    pagination_class = None
    filter_backends: list = []
    target = GRIDS
    preview_serializer_class = GridPreviewSerializer

    def get_queryset(self):
        # What the user may view, narrowed to where they may draw (sub-branches are changed by
        # superusers only, so restrict(user, "add") on SubBranch itself would be empty).
        user = self.request.user
        return (
            SubBranch.objects.restrict(user, "view")
            .filter(pk__in=import_sub_branches(user).values("pk"))
            .order_by("code")
        )

    def _read(self, request, serializer_class):
        _check_length(request)
        params = serializer_class(data=request.data, context=self.get_serializer_context())
        params.is_valid(raise_exception=True)
        data = params.validated_data
        parsed = read(data["file"], self.target)
        return data, parsed

    def report(self, data, parsed, mapping):
        raise NotImplementedError

    def commit_rows(self, data, parsed, mapping):
        raise NotImplementedError

    def list(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.get_queryset(), many=True).data)

    def inspect(self, request, *args, **kwargs):
        _data, parsed = self._read(request, ImportFileSerializer)
        return Response(inspect(parsed, self.target))

    def preview(self, request, *args, **kwargs):
        data, parsed = self._read(request, self.preview_serializer_class)
        mapping = check_mapping(data["mapping"], parsed, self.target)
        report = self.report(data, parsed, mapping)
        overlaps_ok = data.get("accept_overlaps", True) or not report["overlap_count"]
        report["can_commit"] = not report["error_count"] and overlaps_ok
        return Response(report)

    def commit(self, request, *args, **kwargs):
        data, parsed = self._read(request, self.preview_serializer_class)
        mapping = check_mapping(data["mapping"], parsed, self.target)
        try:
            created = self.commit_rows(data, parsed, mapping)
        except ImportRefused as refused:
            refused.report["can_commit"] = False
            return Response(refused.report, status=status.HTTP_400_BAD_REQUEST)
        return Response({"created": len(created), "ids": [obj.pk for obj in created]}, status=status.HTTP_201_CREATED)


INSPECT_SCHEMA = {
    "request": {"multipart/form-data": ImportFileSerializer},
    "responses": {200: InspectSerializer, 400: OpenApiResponse(OpenApiTypes.OBJECT, description="`file` refused.")},
}


class GridImportViewSet(ImportViewSet):
    """导入网格: GeoJSON, KML or a zipped shapefile, through a field mapping and a preview."""

    target = GRIDS
    preview_serializer_class = GridPreviewSerializer

    def report(self, data, parsed, mapping):
        return grids_import_report(parsed=parsed, mapping=mapping, sub_branch=data["sub_branch"])

    def commit_rows(self, data, parsed, mapping):
        return grids_import(
            by=self.request.user,
            parsed=parsed,
            mapping=mapping,
            sub_branch=data["sub_branch"],
            accept_overlaps=data["accept_overlaps"],
        )

    @extend_schema(responses=ImportTargetSerializer(many=True), summary="Sub-branches you may import grids into")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(**INSPECT_SCHEMA, summary="Fields, feature count and a suggested mapping of a grid file")
    @action(detail=False, methods=["post"])
    def inspect(self, request, *args, **kwargs):
        return super().inspect(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": GridPreviewSerializer},
        responses={200: ReportSerializer, 400: OpenApiResponse(OpenApiTypes.OBJECT, description="Bad input.")},
        summary="Row-by-row report of a grid import (nothing is saved)",
    )
    @action(detail=False, methods=["post"])
    def preview(self, request, *args, **kwargs):
        return super().preview(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": GridPreviewSerializer},
        responses={
            201: CommitSerializer,
            400: OpenApiResponse(ReportSerializer, description="Refused: the row report; nothing was saved."),
        },
        summary="Create every row of a grid file in one transaction, or none",
    )
    @action(detail=False, methods=["post"])
    def commit(self, request, *args, **kwargs):
        return super().commit(request, *args, **kwargs)


class PlaceImportViewSet(ImportViewSet):
    """导入地点 (parks, markets, districts, communities, villages): each lands in the grid that
    contains its point (or its point on surface), which must be a grid of the chosen sub-branch."""

    target = PLACES_TARGET
    preview_serializer_class = PlacePreviewSerializer

    def report(self, data, parsed, mapping):
        return places_import_report(
            parsed=parsed, mapping=mapping, sub_branch=data["sub_branch"], user=self.request.user
        )

    def commit_rows(self, data, parsed, mapping):
        return places_import(by=self.request.user, parsed=parsed, mapping=mapping, sub_branch=data["sub_branch"])

    @extend_schema(responses=ImportTargetSerializer(many=True), summary="Sub-branches you may import places into")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(**INSPECT_SCHEMA, summary="Fields, feature count and a suggested mapping of a place file")
    @action(detail=False, methods=["post"])
    def inspect(self, request, *args, **kwargs):
        return super().inspect(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": PlacePreviewSerializer},
        responses={200: ReportSerializer, 400: OpenApiResponse(OpenApiTypes.OBJECT, description="Bad input.")},
        summary="Row-by-row report of a place import (nothing is saved)",
    )
    @action(detail=False, methods=["post"])
    def preview(self, request, *args, **kwargs):
        return super().preview(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": PlacePreviewSerializer},
        responses={
            201: CommitSerializer,
            400: OpenApiResponse(ReportSerializer, description="Refused: the row report; nothing was saved."),
        },
        summary="Create every row of a place file in one transaction, or none",
    )
    @action(detail=False, methods=["post"])
    def commit(self, request, *args, **kwargs):
        return super().commit(request, *args, **kwargs)


# -- exports ----------------------------------------------------------------------------------


class GeoJSONRenderer(BaseRenderer):
    media_type = "application/geo+json"
    format = "geojson"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()


class PlainJSONGeoRenderer(GeoJSONRenderer):
    """The same GeoJSON for clients that only accept ``application/json``."""

    media_type = "application/json"
    format = "json"


class XlsxRenderer(BaseRenderer):
    media_type = exports.XLSX_CONTENT_TYPE
    format = "xlsx"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()


class ExportViewSet(RestrictedViewSetMixin, viewsets.GenericViewSet):
    """An export: ``.geojson`` (default) or ``.xlsx`` by URL suffix or ``?format=``."""

    renderer_classes = [GeoJSONRenderer, XlsxRenderer, PlainJSONGeoRenderer]
    pagination_class = None
    stem = ""

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response):  # errors (400, 401, 403, 404, 406) are plain JSON
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    def build(self, queryset, fmt: str) -> bytes:
        raise NotImplementedError

    def list(self, request, *args, **kwargs):
        fmt = "xlsx" if request.accepted_renderer.format == "xlsx" else "geojson"
        body = self.build(self.filter_queryset(self.get_queryset()), fmt)
        content_type = exports.XLSX_CONTENT_TYPE if fmt == "xlsx" else request.accepted_renderer.media_type
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{exports.export_filename(self.stem, fmt)}"'
        return response


EXPORT_SCHEMA = {
    "filters": True,
    "parameters": [
        OpenApiParameter(
            "format",
            str,
            enum=["geojson", "xlsx", "json"],
            description="Output format; the URL suffix (`.geojson`, `.xlsx`) does the same.",
        )
    ],
    "responses": {
        (200, "application/geo+json"): OpenApiTypes.OBJECT,
        (200, exports.XLSX_CONTENT_TYPE): OpenApiTypes.BINARY,
        (200, "application/json"): OpenApiTypes.OBJECT,
    },
}


class GridExportViewSet(ExportViewSet):
    """导出网格: id, code, name, type, status, sub-branch code, area (m²) and the boundary."""

    queryset = Grid.objects.all()
    filterset_class = GridFilterSet
    stem = "grids"

    def build(self, queryset, fmt):
        return exports.grids_xlsx(queryset) if fmt == "xlsx" else exports.grids_geojson(queryset)

    @extend_schema(**EXPORT_SCHEMA, summary="Export grids as GeoJSON or Excel")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class PlaceExportFilterSet(PlaceFilterSet):
    sub_branch = IdFilter(field_name="grid__sub_branch_id")

    class Meta(PlaceFilterSet.Meta):
        fields = [*PlaceFilterSet.Meta.fields, "sub_branch"]


class PlaceExportViewSet(ExportViewSet):
    """导出地点: id, name, type, grid, sub-branch code and the geometry."""

    queryset = Place.objects.all()
    filterset_class = PlaceExportFilterSet
    stem = "places"

    def build(self, queryset, fmt):
        return exports.places_xlsx(queryset) if fmt == "xlsx" else exports.places_geojson(queryset)

    @extend_schema(**EXPORT_SCHEMA, summary="Export places as GeoJSON or Excel")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)
