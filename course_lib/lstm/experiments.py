"""Module 02's experiments, kept out of the notebook: equal-budget comparisons and a predict-then-run task.

- :func:`compare_on_adding` trains several recurrent models on the adding problem at the *same*
  learning rates and seeds, with the same data, test set and number of steps, and returns every
  run's test MSE and accuracy (so a notebook can show mean and spread, next to the baselines).
- :func:`predict_then_run` takes a learner's prediction of how long a forget gate remembers,
  records it, and only then runs the measurement; :func:`forget_memory_theory` is the answer that
  follows from the carousel (the grader of ``predict_forget_memory`` compares with it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.lstm.reference import init_forget_bias, lstm, state_gradient_norms
from course_lib.progress_bars import progress_bar
from course_lib.tasks.adding import adding_accuracy, adding_baselines, adding_problem
from course_lib.training import SequenceRegressor, TrainConfig, train


@dataclass
class AddingComparison:
    """Results of :func:`compare_on_adding`: arrays of shape (n_seeds,) per (model, learning rate)."""

    T: int
    steps: int
    seeds: list[int]
    lrs: list[float]
    mse: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    accuracy: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    baselines: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (test MSE, accuracy)
    models: dict[tuple[str, float, int], nn.Module] = field(default_factory=dict)
    seconds: float = 0.0


def compare_on_adding(models: Mapping[str, Mapping], lrs: Sequence[float], seeds: Sequence[int], T: int,
                      steps: int, batch: int = 64, test_size: int = 1000, test_seed: int = 123,
                      progress: bool = True) -> AddingComparison:
    """Train every model of ``models`` (name -> ``dict(cell=..., hidden=...)``) at every learning rate and seed.

    A run with seed ``s`` initialises its weights with ``torch.manual_seed(s)`` and draws its
    training batches from a generator seeded with ``s``, so at one seed all models see the same
    data. All runs use AdamW, clipping at 1.0 and ``steps`` steps of ``batch`` sequences; each is
    tested on the same ``test_size`` sequences. The baselines are measured on that test set.
    """
    x_test, y_test = adding_problem(test_size, T, torch.Generator().manual_seed(test_seed))
    out = AddingComparison(T=T, steps=steps, seeds=list(seeds), lrs=list(lrs))
    for name, pred in adding_baselines(x_test).items():
        out.baselines[name] = (float(F.mse_loss(pred, y_test)), adding_accuracy(pred, y_test))
    start = time.perf_counter()
    bar = progress_bar(total=len(models) * len(lrs) * len(seeds), desc="training runs", enabled=progress)
    for name, spec in models.items():
        for lr in lrs:
            mse, acc = [], []
            for seed in seeds:
                bar.set_postfix_str(f"{name}, lr {lr:g}, seed {seed}")
                torch.manual_seed(seed)
                model = SequenceRegressor(spec["cell"], 2, spec["hidden"])
                train(model, lambda b, g: adding_problem(b, T, g), F.mse_loss,
                      TrainConfig(steps=steps, batch=batch, lr=lr, clip=1.0, seed=seed, progress=False))
                with torch.no_grad():
                    pred = model(x_test)
                mse.append(float(F.mse_loss(pred, y_test)))
                acc.append(adding_accuracy(pred, y_test))
                out.models[name, lr, seed] = model
                bar.update()
            out.mse[name, lr] = np.array(mse)
            out.accuracy[name, lr] = np.array(acc)
    bar.close()
    out.seconds = time.perf_counter() - start
    return out


# --------------------------------------------------------------------------------------------
# Predict, then run: how long does a forget gate remember?
# --------------------------------------------------------------------------------------------


def forget_memory_theory(forget_bias, steps) -> tuple[torch.Tensor, torch.Tensor]:
    """For a constant forget gate f = σ(b): the half-life n with f^n = 1/2 and the fraction f^steps kept.

    Along the cell path (W_hh = 0, nothing else moving the gate) ∂c_S/∂c_0 = f^S: both numbers
    follow from the carousel alone. ``forget_bias`` and ``steps`` may be numbers or tensors.
    """
    b = torch.as_tensor(forget_bias, dtype=torch.float64)
    log_f = F.logsigmoid(b)
    # $$n_{1/2} = \log(1/2) / \log\sigma(b), \qquad \text{kept} = \sigma(b)^{S}$$
    return math.log(0.5) / log_f, torch.exp(torch.as_tensor(steps, dtype=torch.float64) * log_f)


@dataclass
class PredictionRecord:
    """A prediction, written down before :func:`predict_then_run` measured anything, and the measurement."""

    forget_bias: float
    steps: int
    prediction: dict[str, float] | None
    measured: dict[str, float] = field(default_factory=dict)
    recorded_at: float = 0.0
    measured_at: float = 0.0

    @property
    def attempted(self) -> bool:
        return self.prediction is not None


def _validate_prediction(prediction) -> dict[str, float]:
    if not isinstance(prediction, Mapping) or set(prediction) != {"half_life", "kept_after"}:
        raise ValueError("the prediction is a dict with exactly two numbers: "
                         "{'half_life': ..., 'kept_after': ...}")
    clean = {}
    for key, value in prediction.items():
        if isinstance(value, torch.Tensor):
            raise ValueError(f"{key}: write down a plain number (pen and paper, or Python arithmetic), "
                             "not a tensor computed by code")
        value = float(value)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{key} must be a positive number, got {value}")
        clean[key] = value
    if clean["kept_after"] > 1:
        raise ValueError("kept_after is a fraction of the gradient: at most 1")
    return clean


def predict_then_run(prediction, forget_bias: float = 4.0, steps: int = 50, hidden: int = 16,
                     batch: int = 32, seed: int = 0, measure_without_prediction: bool = False) -> PredictionRecord:
    """Record ``prediction`` (None: not made yet), then measure the carousel of a real LSTM layer.

    Without a prediction nothing is measured, unless ``measure_without_prediction`` (the lecture
    notebook, which grades nothing); the record then has no prediction and cannot pass the grader.

    The layer is an ``nn.LSTM(2, hidden)`` with torch's default initialisation, the forget-gate
    bias set to ``forget_bias`` and W_hh = 0 (no gate paths), run on adding-problem sequences of
    length ``steps``. Measured, along the cell path: the median over sequences and units of
    ∂c_S/∂c_0 (``kept_after``) and the first lag at which the relative gradient norm falls below
    1/2 (``half_life``). The input still moves each forget gate around its bias a little.
    """
    record = PredictionRecord(float(forget_bias), int(steps), None)
    if prediction is None:
        if not measure_without_prediction:
            print("No prediction recorded: write yours down first, then run this cell again.")
            return record
        print("No prediction recorded (the exercise notebook grades one); measuring anyway.")
    else:
        record.prediction = _validate_prediction(prediction)
        record.recorded_at = time.time()
        print(f"your prediction (recorded): half-life {record.prediction['half_life']:.3g} steps, "
              f"fraction kept after {steps} steps {record.prediction['kept_after']:.3g}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = init_forget_bias(nn.LSTM(2, hidden, batch_first=True, dtype=torch.float64), forget_bias)
    with torch.no_grad():
        layer.weight_hh_l0.zero_()
    x, _ = adding_problem(batch, steps, torch.Generator().manual_seed(seed), dtype=torch.float64)
    w = {n: getattr(layer, f"{n}_l0").detach() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    c0 = torch.zeros(batch, hidden, dtype=torch.float64, requires_grad=True)
    _, (_, c_S) = lstm(x, (torch.zeros(batch, hidden, dtype=torch.float64), c0), **w)
    (jac,) = torch.autograd.grad(c_S.sum(), c0)  # diagonal Jacobian: one number per sequence and unit
    norms = state_gradient_norms(layer, x, seed=seed, paths="cell")  # lag 0 first
    below = (norms < 0.5).nonzero()
    record.measured = dict(half_life=float(below[0, 0]) if len(below) else float("inf"),
                           kept_after=float(jac.median()))
    record.measured_at = time.time()
    theory_half, theory_kept = forget_memory_theory(forget_bias, steps)
    print(f"measured:                   half-life {record.measured['half_life']:.3g} steps (first whole lag "
          f"below 1/2), fraction kept {record.measured['kept_after']:.3g} (median over sequences and units)")
    print(f"constant gate σ(b):         half-life {float(theory_half):.3g} steps, fraction kept "
          f"{float(theory_kept):.3g}")
    return record
