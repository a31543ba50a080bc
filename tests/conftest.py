import os
import sys
from pathlib import Path

import pytest

import course_lib  # noqa: F401  sets TRITON_INTERPRET (no GPU) before any test module imports triton

sys.path.insert(0, str(Path(__file__).parent))
# Training loops show tqdm progress bars; tests (and the notebooks nbval runs) do not need them.
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True, scope="session")
def _isolated_progress(tmp_path_factory):
    """Keep the learner's progress file out of the tests' way."""
    os.environ["COURSE_PROGRESS_FILE"] = str(tmp_path_factory.mktemp("progress") / "progress.json")
    yield


# `course test` runs files whole on two workers (`--dist loadfile --no-loadscope-reorder`), so the run ends
# when the worker with the most work ends: the long files start first (longest-first packing). Seconds on
# 2 cores with both workers busy, from `course test --durations` on 2026-12-03; other files keep their order.
LONG_FILES = {
    "tests/test_lab_browser.py": 560,
    "tests/tools/test_nbgrader_course.py": 200,
    "tests/tools/test_classroom.py": 190,
    "notebooks/02_lstm_gates.ipynb": 130,
    "notebooks/03_attention.ipynb": 125,
    "notebooks/06_mlstm.ipynb": 95,
    "notebooks/01_rnn_bptt.ipynb": 55,
    "notebooks/05_slstm.ipynb": 55,
    "tests/test_slides.py": 50,
    "tests/test_cli.py": 48,
    "notebooks/04_hopfield.ipynb": 45,
    "tests/tools/test_kernel_stress.py": 40,
}


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: -LONG_FILES.get(item.nodeid.split("::", 1)[0], 0))
