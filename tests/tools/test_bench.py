"""``course bench``: merging into the results file, errors, and notebooks stopped by the time limit."""

from __future__ import annotations

import shutil

import nbformat
import pytest

from course_lib.cli import main
from course_lib.tools.bench import SUITE_ROW, _read_block, run_bench, time_notebook
from course_lib.tools.nbgrader_course import course_root

ROOT = course_root()


def test_bench_merges_instead_of_dropping_rows_it_did_not_measure(tmp_path):
    out = tmp_path / "RESULTS.md"
    shutil.copy(ROOT / "benchmarks" / "RESULTS.md", out)
    before_rows, before_comparisons = _read_block(out)
    assert SUITE_ROW in before_rows and before_comparisons, "the committed results have a suite row and a table"
    assert run_bench(ROOT, notebooks=False, tests=False, kernels=False, out=out) == 0
    after_rows, after_comparisons = _read_block(out)
    assert after_rows == before_rows
    assert after_comparisons[1:] == before_comparisons[1:]
    text = out.read_text()
    assert text.split("<!-- bench:begin -->")[0] == (ROOT / "benchmarks" / "RESULTS.md").read_text().split(
        "<!-- bench:begin -->")[0], "the hand-written text above the block is kept"


def test_bench_into_a_missing_folder_is_an_error_not_a_new_folder(tmp_path, capsys):
    out = tmp_path / "nope" / "RESULTS.md"
    assert main(["bench", "--no-notebooks", "--no-kernels", "--out", str(out)]) == 1
    assert "no folder" in capsys.readouterr().err
    assert not out.parent.exists()


def test_a_hanging_cell_is_stopped_and_named(tmp_path):
    path = tmp_path / "slow.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("import time\ntime.sleep(600)")])
    nbformat.write(nb, path)
    seconds, status = time_notebook(path, timeout=3)
    assert seconds < 60
    assert status == ("stopped: cell 1: import time did not finish within 3 s and was stopped "
                      "(the kernel was waiting, no CPU use)")


@pytest.mark.parametrize("argv", [["check", "--timeout", "0"], ["check", "--timeout", "-5"]])
def test_timeouts_must_be_positive(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "not a positive number of seconds" in capsys.readouterr().err


def test_bench_records_the_three_mlstm_forms_against_s(tmp_path, monkeypatch):
    from course_lib.tools import kernel_bench

    comparisons, scaling = kernel_bench.run_comparisons, kernel_bench.mlstm_scaling
    monkeypatch.setattr(kernel_bench, "run_comparisons", lambda: comparisons(small=True))
    monkeypatch.setattr(kernel_bench, "mlstm_scaling", lambda: scaling(small=True, repeats=1))
    out = tmp_path / "RESULTS.md"
    shutil.copy(ROOT / "benchmarks" / "RESULTS.md", out)
    run_bench(ROOT, notebooks=False, tests=False, kernels=True, out=out)
    block = out.read_text().split("<!-- bench:begin -->")[1]
    assert "The three mLSTM forms against the sequence length S" in block
    assert "recurrent ms" in block and "parallel ms" in block and "chunkwise ms" in block
    rows, kept = _read_block(out)
    assert any("mLSTM forms" in line for line in kept), "a later run without kernels keeps the scaling table"
