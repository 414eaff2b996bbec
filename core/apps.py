from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Shared helpers without models: geometry validation, API plumbing, page helpers."""

    name = "core"
