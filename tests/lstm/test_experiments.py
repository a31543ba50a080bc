"""Module 02's experiments: the equal-budget comparison and the predict-then-run record."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.lstm.experiments import compare_on_adding, forget_memory_theory, predict_then_run


def test_compare_on_adding_trains_every_model_at_every_rate_and_seed():
    models = {"RNN": dict(cell="rnn", hidden=4), "LSTM": dict(cell="lstm", hidden=3)}
    a = compare_on_adding(models, lrs=[1e-3, 1e-2], seeds=[0, 1], T=6, steps=3, batch=4, test_size=50,
                          progress=False)
    b = compare_on_adding(models, lrs=[1e-3, 1e-2], seeds=[0, 1], T=6, steps=3, batch=4, test_size=50,
                          progress=False)
    assert set(a.mse) == {(m, lr) for m in models for lr in (1e-3, 1e-2)}
    assert all(v.shape == (2,) for v in a.mse.values()) and len(a.models) == 8
    assert all((a.mse[k] == b.mse[k]).all() for k in a.mse)  # seeded: reproducible
    assert a.mse["LSTM", 1e-2][0] != a.mse["LSTM", 1e-2][1]  # different seeds, different runs
    mean_mse, _ = a.baselines["predict the mean"]
    second_mse, _ = a.baselines["second value only"]
    assert abs(mean_mse - 1 / 6) < 0.08 and abs(second_mse - 1 / 12) < 0.05  # 50 test sequences


def test_forget_memory_theory_is_the_constant_gate_answer():
    half, kept = forget_memory_theory(4.0, 50)
    f = 1 / (1 + math.exp(-4.0))
    assert float(half) == pytest.approx(math.log(0.5) / math.log(f))
    assert float(kept) == pytest.approx(f**50)
    assert float(torch.sigmoid(torch.tensor(4.0, dtype=torch.float64)) ** half) == pytest.approx(0.5)


def test_predict_then_run_records_first_and_measures_close_to_the_theory(capsys):
    record = predict_then_run({"half_life": 30, "kept_after": 0.5}, forget_bias=4.0, steps=50)
    out = capsys.readouterr().out
    assert out.index("your prediction") < out.index("measured")
    assert record.recorded_at <= record.measured_at
    half, kept = (float(t) for t in forget_memory_theory(4.0, 50))
    # The input moves the gate a little around its bias: the measurement is near, not at, the constant-gate value.
    assert abs(record.measured["kept_after"] - kept) < 0.1
    assert abs(record.measured["half_life"] - half) < 5


def test_predict_then_run_without_a_prediction():
    assert not predict_then_run(None).measured
    record = predict_then_run(None, measure_without_prediction=True)
    assert record.measured and not record.attempted
