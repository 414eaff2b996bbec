"""Demo data (``manage.py seed_demo``): see ``crm.demo.builder``."""

from crm.demo.builder import DEMO_PASSWORD, DEMO_USERS, SCALES, DemoDataExists, Summary, load_demo

__all__ = ["DEMO_PASSWORD", "DEMO_USERS", "SCALES", "DemoDataExists", "Summary", "load_demo"]
