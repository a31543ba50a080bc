import pytest
import torch

from course_lib.tasks.adding import adding_problem
from course_lib.training import SequenceRegressor, TrainConfig, train


def _run(seed: int, global_seed: int):
    torch.manual_seed(seed)
    model = SequenceRegressor("lstm", 2, 8, forget_bias=1.0)
    torch.manual_seed(global_seed)  # training must not depend on the caller's global RNG
    log = train(model, lambda b, g: adding_problem(b, 6, g), torch.nn.functional.mse_loss,
                TrainConfig(steps=40, batch=16, lr=1e-2, seed=seed, log_every=10))
    return model, log


def test_training_is_reproducible_and_reduces_the_loss():
    m1, log1 = _run(0, global_seed=1)
    m2, log2 = _run(0, global_seed=2)
    assert log1.loss == log2.loss
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))
    assert log1.loss[-1] < log1.loss[0]
    assert log1.steps == [10, 20, 30, 40]


def test_forget_bias_lands_on_the_forget_rows_only():
    m = SequenceRegressor("lstm", 2, 4, forget_bias=3.0)
    b = m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0
    assert torch.equal(b[4:8], torch.full((4,), 3.0))
    assert not torch.equal(b[:4], torch.full((4,), 3.0))


def test_unknown_cell_is_rejected():
    with pytest.raises(ValueError, match="cell must be one of"):
        SequenceRegressor("transformer", 2, 4)


def test_progress_bar_can_be_turned_off(capsys):
    model = SequenceRegressor("rnn", 2, 4)
    train(model, lambda b, g: adding_problem(b, 4, g), torch.nn.functional.mse_loss,
          TrainConfig(steps=3, batch=2, progress=False))
    assert capsys.readouterr().err == ""
