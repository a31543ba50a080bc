import torch

from course_lib.tasks.adding import adding_accuracy, adding_problem


def test_adding_problem_marks_two_steps_and_sums_their_values():
    gen = torch.Generator().manual_seed(0)
    x, y = adding_problem(256, 30, gen, dtype=torch.float64)
    assert x.shape == (256, 30, 2) and y.shape == (256,)
    markers = x[..., 1]
    assert torch.equal(markers.sum(1), torch.full((256,), 2.0, dtype=torch.float64))
    first = markers.argmax(1)
    assert bool((first < 3).all()), "the first marker lies in the first T/10 steps"
    second = 29 - markers.flip(1).argmax(1)
    assert bool((second >= 15).all()), "the second marker lies in the second half"
    torch.testing.assert_close(y, (x[..., 0] * markers).sum(1), rtol=0, atol=0)


def test_adding_problem_is_reproducible_from_the_generator():
    a = adding_problem(8, 12, torch.Generator().manual_seed(5))
    b = adding_problem(8, 12, torch.Generator().manual_seed(5))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_predicting_the_mean_is_not_a_solution():
    _, y = adding_problem(4000, 20, torch.Generator().manual_seed(1), dtype=torch.float64)
    mse = float(((y - 1.0) ** 2).mean())
    assert abs(mse - 1 / 6) < 0.02
    assert adding_accuracy(torch.ones_like(y), y) < 0.1
    assert adding_accuracy(y, y) == 1.0


def test_baselines_reach_their_derived_mse():
    from course_lib.tasks.adding import MSE_PREDICT_MEAN, MSE_SECOND_VALUE_ONLY, adding_baselines

    x, y = adding_problem(20000, 40, torch.Generator().manual_seed(2), dtype=torch.float64)
    preds = adding_baselines(x)
    mse = {name: float(((p - y) ** 2).mean()) for name, p in preds.items()}
    # standard error of a squared-error mean over 20000 samples is about 0.002 (mean) and 0.001 (second)
    assert abs(mse["predict the mean"] - MSE_PREDICT_MEAN) < 0.008
    assert abs(mse["second value only"] - MSE_SECOND_VALUE_ONLY) < 0.004
    # the "second value only" residual is exactly u_1 - 1/2: it never uses the first marked value
    first = x[..., 1].argmax(1)
    u1 = x[..., 0].gather(1, first.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(y - preds["second value only"], u1 - 0.5, rtol=0, atol=1e-12)
