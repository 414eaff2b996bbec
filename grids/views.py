from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def map_page(request):
    """The map: grids coloured by sub-branch, merchants clustered. Data comes from the
    restricted layer endpoints, so the page itself holds nothing out of scope."""
    return render(request, "grids/map.html", {})
