import django_filters

from core.filters import BBoxFilter
from crm.models import Merchant


class MerchantFilterSet(django_filters.FilterSet):
    bbox = BBoxFilter(field_name="location")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Merchant
        fields = ["grid", "status", "industry", "owner", "place"]
