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


def test_targets_are_judged_from_the_rows():
    rows = ["| attention | fwd | B=4, NH=16, S=4096, D=64, causal=False | 300 | 350 | — | 0.86× | — | ok |",
            "| attention | fwd | B=1, NH=16, S=16384, D=128, causal=True | 300 | 350 | — | 0.75× | — | ok |",
            "| attention | fwd | B=32, NH=16, S=512, D=64, causal=False | 100 | 350 | — | 0.30× | — | ok |",
            "| mLSTM chunkwise | fwd | B=4, NH=8, S=4096, D=64, L=64 | 50 | 20 | 80 | 2.50× | 0.62× | ok |"]
    lines = gpu_bench._targets(rows)
    assert "worst 0.75x -> NOT met" in lines[0]  # S = 512 is below the 4k threshold and does not count
    assert "worst 2.50x -> met" in lines[1]
    assert "worst 0.62x -> met" in lines[2]
