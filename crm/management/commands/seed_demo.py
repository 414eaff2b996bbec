"""``manage.py seed_demo --scale S|M|L --seed N [--if-empty | --reset | --fill]``: load the demo city.

``--fill`` adds what a database seeded by an earlier version lacks: the account steps (people,
relations, products, leads, activities, tasks) whose table is empty; everything on an empty one."""

import argparse

from django.core.management.base import BaseCommand, CommandError

from crm.demo import DEMO_PASSWORD, SCALES, DemoDataExists, load_demo


class Command(BaseCommand):
    help = (
        "Load demo data around Hangzhou: S = 1 branch, 5 sub-branches, ~60 grids, 5,000 merchants; "
        "M = 5,000 grids, 200,000 merchants; L = 10,000 grids, 1,000,000 merchants. "
        f"Every demo user's password is {DEMO_PASSWORD!r}."
    )

    def add_arguments(self, parser):
        parser.add_argument("--scale", choices=sorted(SCALES), default="S")
        parser.add_argument("--seed", type=int, default=1)
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--if-empty", action="store_true", help="Do nothing when a branch already exists.")
        mode.add_argument("--reset", action="store_true", help="Empty the domain tables first (destroys data).")
        mode.add_argument(
            "--fill",
            action="store_true",
            help="Load only what is missing: on a seeded database, the account steps (people, relations, "
            "products, leads, activities, tasks) whose table is empty. Use the seed it was loaded with.",
        )
        # Smaller worlds for tests; not part of the documented interface.
        for name in ("merchants", "grids", "places", "sub_branches"):
            parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help=argparse.SUPPRESS)

    def handle(self, *args, scale, seed, if_empty, reset, fill, **options):
        overrides = {k: options.get(k) for k in ("merchants", "grids", "places", "sub_branches")}
        self.stdout.write(f"seed_demo: scale {scale}, seed {seed}")
        try:
            summary = load_demo(
                scale=scale,
                seed=seed,
                reset=reset,
                if_empty=if_empty,
                fill=fill,
                overrides=overrides,
                log=self.stdout.write,
            )
        except DemoDataExists as exc:
            raise CommandError(str(exc)) from None
        if summary.skipped:
            if fill:
                self.stdout.write("seed_demo: every step is already loaded; nothing to fill.")
            else:
                self.stdout.write("seed_demo: the database already has data (a branch exists); nothing loaded.")
            return
        counts = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in summary.counts.items())
        self.stdout.write(self.style.SUCCESS(f"seed_demo: loaded {counts} in {summary.elapsed:.1f} s."))
        self.stdout.write(f"Logins (password {DEMO_PASSWORD}): manage.py demo_logins")
