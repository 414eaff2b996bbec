"""``manage.py demo_logins``: where the app runs and who to log in as (scripts/run.sh prints it)."""

import socket
import subprocess

from django.core.management.base import BaseCommand
from django.db import DatabaseError

from crm.demo import DEMO_PASSWORD

# username, role (Chinese, English), what they see
LOGINS = (
    ("admin", "系统管理员", "Superuser", "全部数据与后台管理 /admin/ · everything, plus the admin site"),
    ("region", "分行负责人", "Regional head", "{branch}全部支行、网格与商户 · the whole branch"),
    ("midoffice", "中台分析", "Mid-office analyst", "{branch}全部数据，只读 · the whole branch, read-only"),
    ("manager", "支行行长", "Branch manager", "{sub_branch}的网格与商户 · one sub-branch"),
    ("leader", "网格长", "Grid leader", "{leader_grids} · their grid(s)"),
    ("am", "客户经理", "Account manager", "{am_grids}，名下商户 · their grids and merchants"),
)


def machine_address() -> str | None:
    """The first address of ``hostname -I`` (what a tablet on the same network would use)."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=2).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None


def _units() -> dict:
    """Names of the units the demo users hold, for the table; empty when the demo is not loaded."""
    from grids.models import Membership, User

    found = {}
    try:
        users = {u.username: u for u in User.objects.filter(username__in=[row[0] for row in LOGINS])}
        rows = (
            Membership.objects.filter(user__username__in=list(users))
            .select_related("branch", "sub_branch", "grid", "user")
            .order_by("grid__code", "id")
        )
        grids: dict[str, list[str]] = {}
        for m in rows:
            if m.branch_id:
                found["branch"] = m.branch.name
            elif m.sub_branch_id:
                found["sub_branch"] = m.sub_branch.name
            else:
                grids.setdefault(m.user.username, []).append(m.grid.name)
        found["leader_grids"] = "、".join(grids.get("leader", [])) or None
        am = grids.get("am", [])
        found["am_grids"] = f"{am[0]} 等 {len(am)} 个网格" if len(am) > 1 else (am[0] if am else None)
        found["users"] = set(users)
    except DatabaseError:
        return {}
    return found


class Command(BaseCommand):
    help = f"Print the app URL and the demo logins (password {DEMO_PASSWORD})."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, port, **options):
        urls = [f"http://127.0.0.1:{port}/"]
        addr = machine_address()
        if addr and addr != "127.0.0.1":
            urls.append(f"http://{addr}:{port}/")
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("gridcrm: " + "  ·  ".join(urls)))
        units = _units()
        fill = {
            "branch": units.get("branch") or "分行",
            "sub_branch": units.get("sub_branch") or "支行",
            "leader_grids": units.get("leader_grids") or "一个网格",
            "am_grids": units.get("am_grids") or "三个网格",
        }
        present = units.get("users")
        rows = [("角色 Role", "用户名 Username", "密码 Password", "可见范围 What they see")]
        for username, zh, en, sees in LOGINS:
            rows.append((f"{zh} {en}", username, DEMO_PASSWORD, sees.format(**fill)))
        widths = [max(_width(r[i]) for r in rows) for i in range(3)]
        for i, row in enumerate(rows):
            cells = [_pad(c, w) for c, w in zip(row[:3], widths, strict=True)]
            self.stdout.write("  " + "  ".join(cells) + "  " + row[3])
            if i == 0:
                self.stdout.write("  " + "  ".join("-" * w for w in widths) + "  " + "-" * 24)
        if present is not None and len(present) < len(LOGINS):
            missing = sorted({r[0] for r in LOGINS} - present)
            self.stdout.write(
                self.style.WARNING(f"  Not in this database: {', '.join(missing)} (load them: manage.py seed_demo)")
            )
        self.stdout.write("")


def _width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))
