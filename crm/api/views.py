from core.api.layers import LayerViewSet
from core.api.viewsets import RestrictedModelViewSet, RestrictedReadOnlyViewSet
from crm.api.serializers import IndustrySerializer, MerchantSerializer
from crm.filtersets import MerchantFilterSet
from crm.models import Industry, Merchant


class IndustryViewSet(RestrictedReadOnlyViewSet):
    queryset = Industry.objects.all()
    serializer_class = IndustrySerializer
    pagination_class = None


class MerchantViewSet(RestrictedModelViewSet):
    queryset = Merchant.objects.select_related("grid")
    serializer_class = MerchantSerializer
    filterset_class = MerchantFilterSet
    # No hard delete: a merchant that is gone is marked "closed" (its history stays).
    http_method_names = ["get", "post", "put", "patch", "head", "options"]


class MerchantLayerViewSet(LayerViewSet):
    queryset = Merchant.objects.all()
    filterset_class = MerchantFilterSet
    geom_column = "location"
    layer_fields = ["id", "name", "status", "grid_id"]
