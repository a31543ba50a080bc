"""Training progress bars in a real Jupyter kernel: shown while running, gone from the saved notebook after."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

VIEW = "application/vnd.jupyter.widget-view+json"
SETUP = "import os\nos.environ.pop('TQDM_DISABLE', None)  # the suite turns bars off; this test needs them\n"


def _run(source: str) -> list:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(source)]
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    NotebookClient(nb, timeout=300, kernel_name="python3", env=env).execute()
    return nb.cells[1].outputs


def _views(outputs) -> list:
    return [o for o in outputs if VIEW in o.get("data", {})]


def test_a_finished_training_bar_leaves_no_widget_view():
    outputs = _run(
        "import torch, torch.nn.functional as F\n"
        "from course_lib.training import SequenceRegressor, TrainConfig, train\n"
        "from course_lib.tasks.adding import adding_problem\n"
        "from course_lib.progress_bars import progress_bar\n"
        "from tqdm.notebook import tqdm_notebook\n"
        "bar = progress_bar(range(3), desc='probe')\n"
        "print('widget bar:', isinstance(bar, tqdm_notebook))\n"
        "for _ in bar: pass\n"
        "bar.close()\n"
        "train(SequenceRegressor('lstm', 2, 8), lambda b, g: adding_problem(b, 10, g), F.mse_loss,\n"
        "      TrainConfig(steps=5, batch=4, log_every=5))\n"
        "print('done')")
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "widget bar: True" in text and "done" in text, outputs
    displayed = [o for o in outputs if o.get("output_type") == "display_data"]
    assert len(displayed) == 2, "one display per bar (the probe and train's)"
    assert not _views(outputs), "a finished bar left its widget view in the notebook"


def test_a_bar_stopped_by_an_error_stays_to_show_where():
    with pytest.raises(Exception, match="stop here"):
        _run("from course_lib.progress_bars import progress_bar\n"
             "for i in progress_bar(range(10), desc='fails'):\n"
             "    if i == 3:\n"
             "        raise RuntimeError('stop here')")


def test_a_disabled_bar_shows_nothing():
    outputs = _run("from course_lib.progress_bars import progress_bar\n"
                   "for _ in progress_bar(range(3), enabled=False): pass")
    assert outputs == []
