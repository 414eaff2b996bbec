from django.contrib import admin
from leaflet.admin import LeafletGeoAdmin

from crm.models import GridCheckRun, Industry, Merchant
from crm.services import merchant_save


@admin.register(Industry)
class IndustryAdmin(admin.ModelAdmin):
    list_display = ("code", "name_zh", "name_en", "is_key", "sort_order")


@admin.register(Merchant)
class MerchantAdmin(LeafletGeoAdmin):
    list_display = ("name", "credit_code", "grid", "owner", "status")
    list_filter = ("status",)
    search_fields = ("name", "credit_code")
    raw_id_fields = ("owner", "place")
    list_select_related = ("grid", "owner")

    def save_model(self, request, obj, form, change):
        merchant_save(merchant=obj, by=request.user)


@admin.register(GridCheckRun)
class GridCheckRunAdmin(admin.ModelAdmin):
    list_display = ("started_at", "finished_at", "checked", "fixed")
