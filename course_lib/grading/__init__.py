"""Graders for the course's exercises.

``check(exercise_id, fn)`` grades a learner's function and returns a :class:`CheckResult` (rich
HTML in a notebook, plain text elsewhere); ``check(...).raise_for_status()`` turns a failure into an
``AssertionError``, which is how the graded cells of the exercise notebooks give nbgrader its verdict.
``EXERCISES`` is the registry (module, title, points, difficulty, minutes, signature).
"""

from __future__ import annotations

from typing import Any

from course_lib.grading import progress
from course_lib.grading.core import EXERCISES, CheckResult, Exercise, SubCheck, run_grader

# Importing a grader module registers its exercises.
from course_lib.grading import attention, hopfield, intro, kernels, lstm, mlstm, rnn, slstm  # noqa: E402,F401  isort: skip

__all__ = ["EXERCISES", "CheckResult", "Exercise", "SubCheck", "check", "exercises_for_module"]


def check(exercise_id: str, fn: Any, *, seed: int = 0, timeout_s: float | None = None,
          record: bool = True) -> CheckResult:
    """Grade ``fn`` as a solution of ``exercise_id``; never raises for the learner's mistakes.

    The grader draws inputs from its own seeded ``torch.Generator``, computes references in
    float64, and restores the default dtype, grad mode and global RNG states afterwards.
    ``timeout_s`` overrides the exercise's time limit.
    """
    result = run_grader(exercise_id, fn, seed=seed, timeout_s=timeout_s)
    if record and exercise_id in EXERCISES:
        progress.record(result)
    return result


def exercises_for_module(module: str) -> list[Exercise]:
    """The registered exercises of module ``"NN"``, in registration order."""
    return [e for e in EXERCISES.values() if e.module == module]
