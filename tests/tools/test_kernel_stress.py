"""The kernel answers every request (ipykernel issue 1554), and the installed ipykernel is outside the
range that loses requests."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from course_lib.tools.kernel_stress import stress
from course_lib.tools.nbgrader_course import course_root


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def test_installed_ipykernel_is_not_one_that_loses_requests():
    installed = _release(version("ipykernel"))
    assert not ((7, 0, 0) <= installed < (7, 4, 0)), f"ipykernel {version('ipykernel')} can hang (issue 1554)"
    spec = re.search(r'"(ipykernel[^"]*)"', (course_root() / "pyproject.toml").read_text()).group(1)
    assert all(f"!=7.{minor}.*" in spec for minor in range(4)), spec


@pytest.mark.timeout(300)
def test_a_burst_of_requests_gets_every_reply():
    """With ipykernel 7.3.0 this pattern left a burst without replies about every 25 s on 2 cores."""
    result = stress(seconds=40, burst=40, reply_timeout=20)
    assert result.rounds > 0
    assert result.hangs == 0, str(result)
