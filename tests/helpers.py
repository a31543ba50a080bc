"""Shared test helpers: one ``assert_close`` and the tolerances it uses."""

from __future__ import annotations

import torch

from course_lib.grading.core import report_error

# Against a float64 reference: float64 code must agree to rounding, float32 code to single precision.
TOL = {
    torch.float64: dict(atol=1e-10, rtol=1e-8),
    torch.float32: dict(atol=1e-5, rtol=1e-4),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float | None = None,
                 rtol: float | None = None, name: str = "tensor") -> None:
    """Raise with the max abs/rel error and the worst index unless ``actual`` matches ``expected``."""
    assert isinstance(actual, torch.Tensor), f"{name}: expected a tensor, got {type(actual).__name__}"
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    tol = TOL.get(actual.dtype, TOL[torch.float32])
    atol = tol["atol"] if atol is None else atol
    rtol = tol["rtol"] if rtol is None else rtol
    err = report_error(actual.detach().double().cpu(), expected.detach().double().cpu(), atol=atol, rtol=rtol)
    if err is not None:
        raise AssertionError(f"{name}: {err}")


def grade_outcome(exercise_id: str, fn) -> tuple[bool, str | None, str]:
    """(passed, stage of the first failing sub-check, text) for ``check(exercise_id, fn)``."""
    from course_lib.grading import check

    result = check(exercise_id, fn, record=False)
    failure = result.failure
    return result.passed, (failure.stage if failure else None), str(result)


def assert_passes(exercise_id: str, fn) -> None:
    """``fn`` is a correct implementation: the grader must accept it."""
    passed, _, text = grade_outcome(exercise_id, fn)
    assert passed, text


def assert_rejected_at(exercise_id: str, fn, stage: str) -> str:
    """``fn`` is wrong: the grader must reject it, at the sub-check ``stage``; returns the feedback text."""
    passed, failing, text = grade_outcome(exercise_id, fn)
    assert not passed, f"a wrong implementation passed:\n{text}"
    assert failing == stage, f"expected a failure at {stage!r}, got {failing!r}:\n{text}"
    return text


def assert_stub_not_attempted(exercise_id: str, params: list[str]) -> None:
    """A stub with the exercise's parameter names that raises NotImplementedError reads 'not attempted'."""
    import inspect

    from course_lib.grading import check

    def stub(*args, **kwargs):
        raise NotImplementedError()

    stub.__signature__ = inspect.Signature(
        [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params])
    result = check(exercise_id, stub, record=False)
    assert result.not_attempted and not result.passed
    assert "not attempted" in result.summary()
