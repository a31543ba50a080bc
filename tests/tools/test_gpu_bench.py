"""``course bench kernels``: without a GPU it checks correctness, says so and exits 0; results merge."""

from __future__ import annotations

import pytest
import torch

from course_lib.tools import gpu_bench


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path")
def test_without_a_gpu_it_checks_correctness_and_exits_cleanly(tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nkept text\n")
    assert gpu_bench.run_gpu_bench(path=results) == 0
    out = capsys.readouterr().out
    assert "no CUDA GPU" in out and "nothing to time" in out
    errors = [float(line.rsplit("max error ", 1)[1]) for line in out.splitlines() if "max error" in line]
    assert len(errors) == 3 and max(errors) < 1e-12
    assert results.read_text() == "# Benchmark results\n\nkept text\n"  # nothing invented, nothing written


def test_results_block_is_merged_and_read_back(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n<!-- bench:begin -->\nCPU table\n<!-- bench:end -->\n")
    assert gpu_bench.recorded_gpu_results(results) == gpu_bench.NO_RESULTS
    gpu_bench.write_gpu_results("GPU table v1", results)
    gpu_bench.write_gpu_results("GPU table v2", results)
    text = results.read_text()
    assert "CPU table" in text and "GPU table v2" in text and "GPU table v1" not in text
    assert text.count(gpu_bench.BEGIN) == 1
    assert gpu_bench.recorded_gpu_results(results) == "GPU table v2"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path")
def test_course_bench_kernels_from_the_command_line_exits_cleanly(tmp_path, capsys):
    from course_lib.cli import main

    assert main(["bench", "kernels", "--out", str(tmp_path / "RESULTS.md")]) == 0
    assert "no CUDA GPU" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["bench", "gpu-please"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
