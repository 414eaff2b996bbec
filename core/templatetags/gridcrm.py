"""Small presentation helpers shared by the page templates."""

import re

from django import template

register = template.Library()

_HEX_COLOR = re.compile(r"#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?")
DEFAULT_COLOR = "#3366cc"


@register.filter
def hex_color(value) -> str:
    """``value`` if it is a #rgb / #rrggbb colour, else the default: a colour stored as free text
    never reaches a ``style`` attribute unchecked."""
    value = str(value or "")
    return value if _HEX_COLOR.fullmatch(value) else DEFAULT_COLOR
