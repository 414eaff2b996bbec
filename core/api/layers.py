from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets

from core.api.viewsets import RestrictedViewSetMixin
from core.geojson import feature_collection


class LayerViewSet(RestrictedViewSetMixin, viewsets.GenericViewSet):
    """A lean map layer: a GeoJSON FeatureCollection built in SQL, at most
    MAP_LAYER_MAX_FEATURES features (``"truncated": true`` when there were more)."""

    layer_fields: list[str] = []
    geom_column = "geom"
    pagination_class = None

    def get_layer_queryset(self, queryset):
        return queryset

    def get_layer_fields(self) -> list[str]:
        """The properties of each feature (``values()`` names); a layer may add opt-in ones."""
        return self.layer_fields

    # filters=True: the response is one object, so drf-spectacular would not document the
    # filterset's query parameters (bbox, grid...) and clients and fuzzers would never send them.
    @extend_schema(filters=True, responses={(200, "application/geo+json"): OpenApiTypes.OBJECT})
    def list(self, request, *args, **kwargs):
        qs = self.get_layer_queryset(self.filter_queryset(self.get_queryset()))
        text, _n, _truncated = feature_collection(
            qs, geom_column=self.geom_column, fields=self.get_layer_fields(), limit=settings.MAP_LAYER_MAX_FEATURES
        )
        return HttpResponse(text, content_type="application/geo+json")
