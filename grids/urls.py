from django.urls import path

from grids import views

urlpatterns = [
    path("map/", views.map_page, name="map"),
    path("territory/", views.territory_page, name="territory"),
]
