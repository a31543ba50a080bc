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
