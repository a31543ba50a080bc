"""The environment report shown in module 00 and by ``course doctor``."""

from __future__ import annotations

import os
import sys

import torch

import course_lib
from course_lib.environment import NO_GPU, PACKAGES, environment_report, package_version


def test_environment_report_facts_match_this_interpreter():
    report = environment_report()
    facts = report.as_dict()
    assert facts["python"] == sys.version.split()[0]
    assert facts["packages"]["torch"] == torch.__version__
    assert list(facts["packages"]) == list(PACKAGES)
    assert facts["cpu_count"] == (os.cpu_count() or 1)
    assert facts["triton_mode"] == course_lib.TRITON_MODE
    if torch.cuda.is_available():
        assert facts["gpu"] == f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    else:
        assert facts["gpu"] == NO_GPU and "TRITON_INTERPRET=1" in facts["gpu"]


def test_environment_report_text_has_one_row_per_fact(capsys):
    report = environment_report(show=True)
    printed = capsys.readouterr().out.strip()
    assert printed == str(report) == repr(report)
    rows = printed.splitlines()
    assert len(rows) == 2 + len(PACKAGES) + 3
    assert rows[0].split() == ["python", sys.version.split()[0]]
    assert any(row.startswith("Triton mode") for row in rows)


def test_missing_packages_are_reported_as_missing():
    assert package_version("surely_not_an_installed_package_xyz") is None
    report = environment_report()
    report.packages["surely_not_an_installed_package_xyz"] = None
    assert report.missing == ["surely_not_an_installed_package_xyz"]
    assert "surely_not_an_installed_package_xyz  not installed" in str(report).splitlines()
