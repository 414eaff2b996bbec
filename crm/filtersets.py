import django_filters

from core.filters import BBoxFilter, IdFilter
from crm.models import Merchant


class MerchantFilterSet(django_filters.FilterSet):
    bbox = BBoxFilter(field_name="location")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    grid = IdFilter(field_name="grid_id")
    owner = IdFilter(field_name="owner_id")
    place = IdFilter(field_name="place_id")
    industry = IdFilter(field_name="industry_id")

    class Meta:
        model = Merchant
        fields = ["grid", "status", "industry", "owner", "place"]
