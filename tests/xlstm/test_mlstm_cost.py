"""Cost measurement of the mLSTM forms: the memory counter on known allocations, the exponent fit, the rows."""

from __future__ import annotations

import pytest
import torch

from course_lib.xlstm.cost import PeakTensorMemory, fit_exponent, measure_mlstm_forms, peak_memory_bytes


def test_peak_memory_counts_live_tensors_and_releases_freed_ones():
    def two_in_turn():
        a = torch.ones(1000)  # 4000 bytes
        del a
        b = torch.ones(2000)  # 8000 bytes; a is gone by now
        return b.sum()

    assert peak_memory_bytes(two_in_turn) == 8000 + 4  # b and the 4-byte sum


def test_peak_memory_counts_views_once():
    def views():
        a = torch.zeros(100, 10)  # 4000 bytes
        b = a.t()  # a view: no new memory
        c = a[:, 0]  # a view
        return b, c

    with torch.no_grad(), PeakTensorMemory() as meter:
        out = views()
    assert meter.peak == 4000
    del out


def test_peak_memory_of_the_parallel_form_grows_quadratically():
    small, large = (peak_memory_bytes(lambda S=S: _parallel(S)) for S in (64, 256))
    assert 12 < large / small < 17  # (256 / 64)^2 = 16 once the S x S matrices dominate


def _parallel(S):
    from course_lib.xlstm import mlstm_parallel
    from course_lib.xlstm.cost import mlstm_inputs

    return mlstm_parallel(*mlstm_inputs(S, NH=1, DQK=8, DV=8))


def test_fit_exponent_recovers_a_power_law():
    xs = [16, 32, 64, 128]
    assert fit_exponent(xs, [3 * x**2 for x in xs]) == pytest.approx(2.0)
    assert fit_exponent(xs, [0.5 * x for x in xs]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fit_exponent([1], [1])


def test_measure_mlstm_forms_rows():
    rows = measure_mlstm_forms([16, 32], NH=1, D=8, chunk_size=8, max_recurrent=16, repeats=1)
    assert [(r["form"], r["S"]) for r in rows] == [("recurrent", 16), ("parallel", 16), ("chunkwise", 16),
                                                   ("parallel", 32), ("chunkwise", 32)]
    assert all(r["seconds"] > 0 and r["peak_bytes"] > 0 for r in rows)
