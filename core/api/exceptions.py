"""Errors are JSON with a clear message and the field at fault; bad input is a 400, never a 500."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    response = drf_exception_handler(exc, context)
    if response is None and isinstance(exc, IntegrityError):
        # A constraint the serializer did not foresee (a race on a unique value): the input is at fault.
        return Response({"non_field_errors": [str(exc).split("\n")[0]]}, status=status.HTTP_400_BAD_REQUEST)
    return response
