"""Links from a step to its commit range: a URL template, or one guessed from the git remote."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

_REMOTE = re.compile(
    r"^(?:https://|git@|ssh://git@)(github\.com|gitlab\.com)[/:](.+?)(?:\.git)?/?$"
)


def guess_template(repo: Path) -> str | None:
    """A compare-URL template for the repository's `origin` on GitHub or GitLab, or None."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _REMOTE.match(done.stdout.strip()) if done.returncode == 0 else None
    if match is None:
        return None
    host, path = match.groups()
    middle = "/-/compare/" if host == "gitlab.com" else "/compare/"
    return f"https://{host}/{path}{middle}{{good}}...{{bad}}"


def range_url(template: str | None, good: str, bad: str) -> str | None:
    """The template with {good} and {bad} replaced by the commits, or None without one."""
    if not template:
        return None
    return template.replace("{good}", good).replace("{bad}", bad)
