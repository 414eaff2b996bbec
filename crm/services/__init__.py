"""Writes with business rules, one module per part: merchants, leads, activities, photos, tasks,
people, handover. Import from the module (``crm.services.leads``); merchant services are also
re-exported here."""

from crm.services.merchants import (
    GRID_OF_LOCATION_SQL,
    merchant_save,
    merchants_assign_to_grids,
    merchants_fix_stray_grids,
)

__all__ = ["GRID_OF_LOCATION_SQL", "merchant_save", "merchants_assign_to_grids", "merchants_fix_stray_grids"]
