"""Thin Celery tasks: load, call a service, stamp what was done."""

from celery import shared_task

from crm.services import merchants_fix_stray_grids


@shared_task(name="crm.tasks.check_merchant_grids")
def check_merchant_grids() -> dict:
    run = merchants_fix_stray_grids()
    return {"run": run.pk, "checked": run.checked, "fixed": run.fixed}
