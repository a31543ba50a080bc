"""The implementation-against-torch benchmark: every pair computes the same thing, and the table reads right."""

import time

import torch

from course_lib.tools.bench import _write_section
from course_lib.tools.kernel_bench import comparison_table, median_ms, run_comparisons


def test_every_comparison_agrees_with_torch_and_is_timed():
    results = run_comparisons(torch.device("cpu"), include_interpreted=True, small=True)
    names = [(r.name, r.ours) for r in results]
    assert ("RNN cell", "rnn_cell_triton (interpreter)") in names
    assert {r.name for r in results} == {"RNN cell", "LSTM sequence", "attention"}
    for r in results:
        assert r.max_abs_err < 1e-5, (r.name, r.ours, r.max_abs_err)
        assert r.ours_ms > 0 and r.theirs_ms > 0
        assert abs(r.ratio - r.ours_ms / r.theirs_ms) < 1e-12
        assert r.device == "cpu"


def test_interpreted_kernels_are_left_out_by_default_on_cpu():
    results = run_comparisons(torch.device("cpu"), small=True)
    assert not any("triton" in r.ours for r in results)


def test_median_ms_runs_warmup_plus_repeats_and_measures_milliseconds():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    ms = median_ms(fn, torch.device("cpu"), repeats=5, warmup=2)
    assert len(calls) == 7
    assert 2.0 <= ms < 200.0


def test_table_and_section_rewrite(tmp_path):
    results = run_comparisons(torch.device("cpu"), small=True)
    lines = comparison_table(results)
    assert len(lines) == 2 + len(results) and all(line.count("|") == 9 for line in lines)
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nhand-written intro\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nnotes\n")
    _write_section(path, "<!-- bench:begin -->\nnew\n<!-- bench:end -->")
    text = path.read_text()
    assert "old" not in text and "new" in text and "hand-written intro" in text and "notes" in text


def test_mlstm_scaling_rows_and_table():
    from course_lib.tools.kernel_bench import mlstm_scaling, mlstm_scaling_table

    rows = mlstm_scaling(torch.device("cpu"), small=True, repeats=1)
    assert [(r.form, r.S) for r in rows] == [(f, S) for S in (16, 32) for f in ("recurrent", "parallel", "chunkwise")]
    assert all(r.ms > 0 and r.peak_mib > 0 and r.device == "cpu" for r in rows)
    par = [r.peak_mib for r in rows if r.form == "parallel"]
    assert par[1] > 2.5 * par[0]  # S doubled: the S x S matrices grow fourfold
    lines = mlstm_scaling_table(rows)
    assert lines[0].count("ms") == 3 and len(lines) == 2 + 2 + 2
    assert lines[-1].startswith("Fitted exponents: recurrent: time ∝ S^")
