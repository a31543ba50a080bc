"""Importing course_lib arranges Triton's interpreter by itself on a machine without a GPU."""

import os
import subprocess
import sys

import pytest
import torch

SNIPPET = "import os, course_lib; print(os.environ.get('TRITON_INTERPRET'), course_lib.TRITON_MODE)"


def _import_in_fresh_process(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, env=env,
                          check=True).stdout.split()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")
def test_without_gpu_the_interpreter_is_switched_on():
    assert _import_in_fresh_process({}) == ["1", "interpreter"]


def test_an_explicit_user_setting_is_respected():
    assert _import_in_fresh_process({"TRITON_INTERPRET": "1"}) == ["1", "interpreter"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")
def test_importing_triton_first_gets_a_warning_that_says_what_to_do():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-W", "always", "-c", "import triton, course_lib"], capture_output=True,
                            text=True, env=env, check=True)
    assert "triton was imported before course_lib" in result.stderr
    assert "import course_lib first" in result.stderr
    quiet = subprocess.run([sys.executable, "-W", "always", "-c", "import course_lib, triton"], capture_output=True,
                           text=True, env=env, check=True)
    assert "triton was imported before course_lib" not in quiet.stderr
