"""Admin for superusers only (they see everything anyway, so it needs no scoping); it is for
setting up org units and people, not a place where features live."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from leaflet.admin import LeafletGeoAdmin

from grids.models import Branch, Grid, Membership, Place, SubBranch, User
from grids.selectors import grid_for_point

admin.site.has_permission = lambda request: request.user.is_active and request.user.is_superuser


@admin.register(User)
class GridUserAdmin(UserAdmin):
    fieldsets = (*UserAdmin.fieldsets, (None, {"fields": ("full_name",)}))
    list_display = ("username", "full_name", "is_active", "is_superuser")
    search_fields = ("username", "full_name")


@admin.register(Branch)
class BranchAdmin(admin.ModelAdmin):
    list_display = ("code", "name")


@admin.register(SubBranch)
class SubBranchAdmin(LeafletGeoAdmin):
    list_display = ("code", "name", "branch")
    list_filter = ("branch",)


@admin.register(Grid)
class GridAdmin(LeafletGeoAdmin):
    list_display = ("code", "name", "sub_branch", "kind", "status")
    list_filter = ("sub_branch__branch", "kind", "status")
    search_fields = ("code", "name")


@admin.register(Place)
class PlaceAdmin(LeafletGeoAdmin):
    list_display = ("name", "kind", "grid")
    list_filter = ("kind",)
    readonly_fields = ("grid",)

    def save_model(self, request, obj, form, change):
        obj.grid_id = grid_for_point(obj.geom.point_on_surface)
        super().save_model(request, obj, form, change)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "role", "branch", "sub_branch", "grid", "start_date", "end_date")
    list_filter = ("role",)
    raw_id_fields = ("user", "grid")
