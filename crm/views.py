from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from crm.models import Merchant
from grids.models import Grid
from grids.selectors import active_memberships


@login_required
def home(request):
    """The role's home page: what the user holds and how much is in it (all restricted)."""
    context = {
        "memberships": active_memberships(user=request.user),
        "grid_count": Grid.objects.restrict(request.user).count(),
        "merchant_count": Merchant.objects.restrict(request.user).count(),
    }
    return render(request, "crm/home.html", context)
