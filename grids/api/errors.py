"""Structured 400s for the territory writes (create, propose, redraw, split, merge, apply).

Elsewhere the API answers a 400 with DRF's ``{field: ["message", ...]}``. The territory writes
answer ``{field: [{"message", "code", "spot", "overlaps"}, ...]}`` instead, so the map can draw
where a boundary breaks (``spot``: ``[lon, lat]``) and list the sibling grids it overlaps
(``overlaps``: ``[{grid_id, code, name, area_m2}]``) without parsing the message: the same
``spot`` and overlap rows as the import row report (grids.api.io). The service's
``ValidationError`` carries them in its ``code`` and ``params`` (grids.services.territory).

Kept out of core.api.exceptions on purpose: only the endpoints decorated with
``territory_errors`` change shape; every other endpoint keeps DRF's plain strings."""

from __future__ import annotations

import functools

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.encoding import force_str
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions

NON_FIELD = "non_field_errors"
OVERLAP_KEYS = ("grid_id", "code", "name", "area_m2")


def field_error(message, *, code: str | None = None, spot=None, overlaps=None) -> dict:
    return {
        "message": force_str(message),
        "code": code or "invalid",
        "spot": spot,
        "overlaps": overlaps,
    }


def _spot(params: dict):
    lon, lat = params.get("lon"), params.get("lat")
    if lon is None or lat is None:
        return None
    return [float(lon), float(lat)]


def _overlaps(params: dict):
    rows = params.get("overlaps")
    if not rows:
        return None
    return [{key: row.get(key) for key in OVERLAP_KEYS} for row in rows]


def from_django(exc: DjangoValidationError) -> dict[str, list[dict]]:
    """A service's ValidationError as ``{field: [error objects]}`` (``non_field_errors`` when it
    names no field). Messages are formatted as Django formats them (``message % params``)."""
    groups = exc.error_dict.items() if hasattr(exc, "error_dict") else [(NON_FIELD, exc.error_list)]
    out: dict[str, list[dict]] = {}
    for field, errors in groups:
        for error in errors:
            params = error.params if isinstance(error.params, dict) else {}
            message = error.message
            if error.params:
                message %= error.params
            out.setdefault(field or NON_FIELD, []).append(
                field_error(message, code=error.code, spot=_spot(params), overlaps=_overlaps(params))
            )
    return out


def from_drf(detail) -> dict[str, list[dict]]:
    """A serializer's errors (``ErrorDetail`` leaves, possibly nested by list index or sub-field)
    as ``{top-level field: [error objects]}``: the field at fault stays the key."""
    out: dict[str, list[dict]] = {}

    def walk(field: str, value) -> None:
        if isinstance(value, dict):
            for sub in value.values():
                walk(field, sub)
        elif isinstance(value, list | tuple):
            for sub in value:
                walk(field, sub)
        elif value is not None:
            out.setdefault(field, []).append(field_error(value, code=getattr(value, "code", None)))

    if isinstance(detail, dict):
        for field, value in detail.items():
            walk(str(field), value)
    else:
        walk(NON_FIELD, detail)
    return out


class TerritoryValidationError(exceptions.APIException):
    """A 400 whose body is already the structured shape (DRF would turn every leaf into a string)."""

    status_code = 400
    default_code = "invalid"

    def __init__(self, detail: dict[str, list[dict]]):
        self.detail = detail


def territory_errors(view_method):
    """Turn the 400s of a territory write (the input serializer's and the service's) into the
    structured shape. Other errors (403, 404, 409 stale) pass through unchanged."""

    @functools.wraps(view_method)
    def wrapper(*args, **kwargs):
        try:
            return view_method(*args, **kwargs)
        except exceptions.ValidationError as exc:
            raise TerritoryValidationError(from_drf(exc.detail)) from None
        except DjangoValidationError as exc:
            raise TerritoryValidationError(from_django(exc)) from None

    return wrapper


# -- OpenAPI --------------------------------------------------------------------------------------

FIELD_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "description": "What is wrong, in the user's language."},
        "code": {
            "type": "string",
            "description": "Machine-readable: invalid_geometry, overlaps, required, invalid, ...",
        },
        "spot": {
            "type": "array",
            "items": {"type": "number", "format": "double"},
            "minItems": 2,
            "maxItems": 2,
            "nullable": True,
            "description": "[lon, lat] (WGS 84) where the geometry breaks, when known.",
        },
        "overlaps": {
            "type": "array",
            "nullable": True,
            "description": "The active sibling grids the boundary overlaps, largest first.",
            "items": {
                "type": "object",
                "properties": {
                    "grid_id": {"type": "integer"},
                    "code": {"type": "string"},
                    "name": {"type": "string"},
                    "area_m2": {"type": "number", "format": "double", "description": "Overlap area (m²)."},
                },
                "required": list(OVERLAP_KEYS),
            },
        },
    },
    "required": ["message", "code", "spot", "overlaps"],
}

TERRITORY_400 = OpenApiResponse(
    response={
        "type": "object",
        "description": "The fields at fault (``non_field_errors`` for the rest), each with its errors.",
        "additionalProperties": {"type": "array", "items": FIELD_ERROR_SCHEMA},
    },
    description="Invalid input: each field at fault maps to a list of error objects "
    "(message, code, spot where the geometry breaks, overlapping sibling grids).",
)
