"""The grading engine's guarantees, exercised through the softplus and RNN graders."""

from __future__ import annotations

import json
import random
import re
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import grade_outcome

from course_lib.grading import EXERCISES, CheckResult, check
from course_lib.grading.core import Grader
from course_lib.rnn import reference as ref


def softplus(x):
    return F.softplus(x)


def stage_of(result: CheckResult) -> str | None:
    return result.failure.stage if result.failure else None


# --------------------------------------------------------------------------------------------
# check never raises; errors become feedback
# --------------------------------------------------------------------------------------------


def test_check_never_raises_for_a_failing_function():
    def broken(x):
        raise ZeroDivisionError("boom")

    result = check("softplus", broken, record=False)
    assert not result.passed and stage_of(result) == "runs"


@pytest.mark.parametrize("not_a_function", [None, 3.0, "softplus", [1, 2]])
def test_check_rejects_non_functions_at_signature(not_a_function):
    result = check("softplus", not_a_function, record=False)
    assert stage_of(result) == "signature"


def test_wrong_parameter_names_fail_at_signature_and_name_the_contract():
    def softplus_wrong(inputs):
        return F.softplus(inputs)

    result = check("softplus", softplus_wrong, record=False)
    assert stage_of(result) == "signature"
    assert "your function takes (inputs); the contract names them (x)" in result.failure.message
    assert "Rename inputs to x: that is the whole fix" in result.failure.message


def test_renamed_parameters_are_named_one_by_one():
    def forget_half_life(b):
        return -0.6931471805599453 / F.logsigmoid(b)

    result = check("forget_half_life", forget_half_life, record=False)
    assert stage_of(result) == "signature"
    assert "Rename b to forget_bias: that is the whole fix" in result.failure.message

    def rnn_cell(x, hidden, w_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
        return ref.rnn_cell(x, hidden, w_ih, weight_hh, bias_ih, bias_hh, nonlinearity)

    result = check("rnn_cell", rnn_cell, record=False)
    assert "Rename hidden to h, w_ih to weight_ih: that is the whole fix" in result.failure.message


def test_a_missing_parameter_is_not_called_a_rename():
    def rnn_cell(x, h, weight_ih, weight_hh):
        return ref.rnn_cell(x, h, weight_ih, weight_hh)

    result = check("rnn_cell", rnn_cell, record=False)
    assert stage_of(result) == "signature"
    assert "missing: bias_ih, bias_hh, nonlinearity" in result.failure.message
    assert "whole fix" not in result.failure.message


def test_exception_reports_its_type_and_the_learners_line():
    def softplus_with_typo(x):
        y = torch.exp(x)
        return torch.log1p(y) + undefined_name  # noqa: F821 - the learner's mistake

    result = check("softplus", softplus_with_typo, record=False)
    assert stage_of(result) == "runs"
    message = result.failure.message
    assert message.startswith("NameError")
    assert "undefined_name" in message
    assert "in softplus_with_typo" in message and "torch.log1p(y) + undefined_name" in message


def test_exception_inside_torch_points_at_the_learners_line_not_torch():
    def rnn_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
        return torch.tanh(x @ weight_ih + h @ weight_hh.T)  # weight_ih not transposed

    result = check("rnn_cell", rnn_cell, record=False)
    assert stage_of(result) == "runs"
    assert result.failure.message.startswith("RuntimeError")
    assert "x @ weight_ih + h @ weight_hh.T" in result.failure.message
    assert "/torch/" not in result.failure.message


def test_not_implemented_is_not_attempted():
    def softplus(x):
        raise NotImplementedError()

    result = check("softplus", softplus, record=False)
    assert result.not_attempted and not result.passed and result.score == 0
    assert result.summary() == "softplus: not attempted yet"


def test_infinite_loop_is_stopped_and_the_process_keeps_working():
    def softplus_forever(x):
        while True:
            pass

    start = time.perf_counter()
    result = check("softplus", softplus_forever, timeout_s=1, record=False)
    elapsed = time.perf_counter() - start
    assert stage_of(result) == "runs"
    assert "took longer than 1 s" in result.failure.message
    assert elapsed < 5, f"stopping the loop took {elapsed:.1f} s"
    # The looping thread is gone and the next check grades normally.
    assert check("softplus", softplus, timeout_s=1, record=False).passed


def test_exercise_time_limit_applies_without_an_override():
    assert EXERCISES["softplus"].timeout_s > 1
    grader = Grader(EXERCISES["softplus"])
    assert grader.timeout_s == EXERCISES["softplus"].timeout_s
    assert Grader(EXERCISES["softplus"], timeout_s=0.5).timeout_s == 0.5


@pytest.mark.parametrize("value, expected", [("2.5", 2.5), ("0", None), ("-1", None), ("nan", None), ("soon", None)])
def test_a_class_wide_time_limit_comes_from_the_environment(monkeypatch, value, expected):
    """`course autograde --grader-timeout S` sets COURSE_GRADER_TIMEOUT_S for the students' kernels; a value
    that is not a positive number leaves each exercise's own limit."""
    monkeypatch.setenv("COURSE_GRADER_TIMEOUT_S", value)
    assert Grader(EXERCISES["softplus"]).timeout_s == (expected or EXERCISES["softplus"].timeout_s)
    assert Grader(EXERCISES["softplus"], timeout_s=0.5).timeout_s == 0.5  # an explicit limit still wins

    def softplus_forever(x):
        while True:
            pass

    if expected:
        result = check("softplus", softplus_forever, record=False)
        assert not result.passed and "took longer than 2.5 s" in str(result)


# --------------------------------------------------------------------------------------------
# Structural failures stop at the right stage
# --------------------------------------------------------------------------------------------


def test_input_mutation_fails_and_names_the_argument():
    def rnn_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
        h_new = ref.rnn_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
        h.copy_(h_new)  # "update the state in place"
        return h_new

    result = check("rnn_cell", rnn_cell, record=False)
    assert stage_of(result) == "runs"
    assert "modified an input tensor in place (h)" in result.failure.message


def test_mutation_of_a_tensor_inside_a_list_names_the_list_argument():
    def clip_grad_norm(grads, max_norm):
        total = torch.sqrt(sum((g**2).sum() for g in grads))
        factor = min(1.0, max_norm / (float(total) + 1e-6))
        return [g.mul_(factor) for g in grads]

    result = check("clip_grad_norm", clip_grad_norm, record=False)
    assert stage_of(result) == "runs"
    assert "(grads)" in result.failure.message


def test_nan_output_fails_at_finite():
    def softplus_nan(x):
        out = F.softplus(x).clone()
        out[0, 1] = float("nan")
        return out

    result = check("softplus", softplus_nan, record=False)
    assert stage_of(result) == "finite"
    assert "1 NaN/inf values, the first at index [0, 1]" in result.failure.message


def test_wrong_shape_fails_at_shapes():
    result = check("softplus", lambda x: F.softplus(x).flatten(), record=False)
    assert stage_of(result) == "shapes"
    assert "(24,)" in result.failure.message and "(4, 6)" in result.failure.message


def test_wrong_dtype_fails_at_dtype():
    result = check("softplus", lambda x: F.softplus(x.double()), record=False)
    assert stage_of(result) == "dtype"
    assert "torch.float64" in result.failure.message and "torch.float32" in result.failure.message


def test_not_a_tensor_fails_at_types():
    result = check("softplus", lambda x: F.softplus(x).tolist(), record=False)
    assert stage_of(result) == "types"
    assert "got list" in result.failure.message


def test_returning_a_wrong_structure_is_reported_not_raised():
    """rnn expects (out, h_n): a bare tensor fails at types."""
    def rnn(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
        return ref.rnn(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)[0]

    result = check("rnn", rnn, record=False)
    assert stage_of(result) == "types"


def test_first_failure_stops_grading():
    result = check("softplus", lambda x: F.softplus(x).flatten(), record=False)
    assert [c.passed for c in result.checks].count(False) == 1
    assert result.checks[-1] is result.failure


# --------------------------------------------------------------------------------------------
# Global state is restored
# --------------------------------------------------------------------------------------------


def _global_state():
    return (torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_rng_state().clone(),
            random.getstate(), np.random.get_state())


def _assert_same_state(before, after):
    assert after[0] == before[0], "default dtype changed"
    assert after[1] == before[1], "grad mode changed"
    assert torch.equal(after[2], before[2]), "torch RNG state changed"
    assert after[3] == before[3], "random state changed"
    assert after[4][0] == before[4][0] and np.array_equal(after[4][1], before[4][1]) and \
        after[4][2:] == before[4][2:], "numpy RNG state changed"


def test_global_state_is_restored_after_a_learner_changes_it():
    def softplus_that_meddles(x):
        torch.set_default_dtype(torch.float64)
        torch.set_grad_enabled(False)
        torch.manual_seed(1234)
        random.seed(5)
        np.random.seed(6)
        torch.rand(3), random.random(), np.random.rand()
        return F.softplus(x)

    torch.manual_seed(99)
    random.seed(98)
    np.random.seed(97)
    before = _global_state()
    result = check("softplus", softplus_that_meddles, record=False)
    assert result.passed, str(result)
    _assert_same_state(before, _global_state())


def test_global_state_is_restored_after_a_failed_and_a_timed_out_check():
    def meddles_then_fails(x):
        torch.set_default_dtype(torch.float64)
        torch.manual_seed(0)
        raise RuntimeError("late failure")

    def meddles_then_loops(x):
        random.seed(1)
        np.random.seed(1)
        while True:
            pass

    before = _global_state()
    assert stage_of(check("softplus", meddles_then_fails, record=False)) == "runs"
    assert stage_of(check("softplus", meddles_then_loops, timeout_s=1, record=False)) == "runs"
    _assert_same_state(before, _global_state())


def test_graders_do_not_draw_from_the_global_rng():
    """The same global seed before and after: two checks give identical results and leave the RNG alone."""
    torch.manual_seed(0)
    first = str(check("softplus", torch.sigmoid, record=False))
    state = torch.get_rng_state().clone()
    torch.manual_seed(12345)
    second = str(check("softplus", torch.sigmoid, record=False))
    assert first == second
    torch.manual_seed(0)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_check_inside_no_grad_still_grades_gradients(context):
    """A learner who calls check inside ``torch.no_grad()`` must not fail the gradient sub-checks."""
    with context():
        result = check("rnn_cell", ref.rnn_cell, record=False)
        assert not torch.is_grad_enabled()
    assert result.passed, str(result)


# --------------------------------------------------------------------------------------------
# The result object
# --------------------------------------------------------------------------------------------


def test_unknown_exercise_gives_a_clear_failed_result():
    result = check("no_such_exercise", softplus)
    assert isinstance(result, CheckResult) and not result.passed and result.score == 0
    assert "there is no exercise 'no_such_exercise'" in result.failure.message
    assert "softplus" in result.failure.message  # the known ids are listed
    with pytest.raises(AssertionError):
        result.raise_for_status()


def test_raise_for_status_raises_with_the_feedback():
    result = check("softplus", torch.relu, record=False)
    with pytest.raises(AssertionError) as info:
        result.raise_for_status()
    text = str(info.value)
    assert text == str(result)
    assert "failed at values" in text and "max abs error" in text


def test_raise_for_status_returns_the_result_on_success():
    result = check("softplus", softplus, record=False)
    assert result.raise_for_status() is result
    assert result.passed and result.score == EXERCISES["softplus"].points == result.points


def test_html_contains_the_summary_and_the_failure():
    failed = check("softplus", torch.relu, record=False)
    html = failed._repr_html_()
    assert failed.summary() in html
    assert "max abs error" in html
    passed = check("softplus", softplus, record=False)
    assert passed.summary() in passed._repr_html_()


def test_text_lists_every_subcheck_in_order():
    result = check("softplus", softplus, record=False)
    lines = str(result).splitlines()
    assert lines[0] == f"[softplus] {EXERCISES['softplus'].title}"
    assert lines[1] == result.summary()
    assert len(lines) == 2 + len(result.checks)
    assert [line.split()[1] for line in lines[2:]] == [c.stage for c in result.checks]


def _numbers(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", text)]


@pytest.mark.parametrize("wrong", [torch.sigmoid, lambda x: torch.log1p(torch.exp(x)) * 1.01, torch.zeros_like],
                         ids=["sigmoid", "1% too large", "zeros"])
def test_messages_never_contain_the_expected_values(wrong):
    """Reproduce the grader's first input and check no reference value appears in the feedback."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64) * 3.0
    expected = F.softplus(x).flatten().tolist()
    passed, stage, text = grade_outcome("softplus", wrong)
    assert not passed and stage == "values"
    for value in expected:
        for fmt in (".3g", ".4f", ".6g"):
            assert format(value, fmt) not in text, (value, fmt)
    for number in _numbers(text):
        assert all(abs(number - v) > 5e-3 * abs(v) for v in expected), number


def test_an_all_zero_output_is_named_as_such():
    passed, stage, text = grade_outcome("softplus", torch.zeros_like)
    assert not passed and stage == "values"
    assert "your output is all zeros" in text and "max abs error" not in text


def test_progress_is_recorded_to_the_progress_file(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "progress.json"
    monkeypatch.setenv("COURSE_PROGRESS_FILE", str(path))
    monkeypatch.delenv("COURSE_PROGRESS", raising=False)  # `course test` switches recording off
    check("softplus", torch.relu)
    data = json.loads(path.read_text())
    assert data["softplus"]["attempts"] == 1 and data["softplus"]["passed"] is False
    assert data["softplus"]["last_result"] == "failed"
    check("softplus", softplus)
    check("softplus", torch.relu)  # a later failure does not undo a pass
    data = json.loads(path.read_text())
    assert data["softplus"]["attempts"] == 3 and data["softplus"]["passed"] is True
    assert data["softplus"]["score"] == EXERCISES["softplus"].points
    assert data["softplus"]["last_result"] == "failed"


def test_record_false_and_unknown_ids_leave_the_progress_file_alone(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv("COURSE_PROGRESS_FILE", str(path))
    monkeypatch.delenv("COURSE_PROGRESS", raising=False)
    check("softplus", softplus, record=False)
    check("no_such_exercise", softplus)
    assert not path.exists()


def test_course_progress_off_switches_recording_off(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv("COURSE_PROGRESS_FILE", str(path))
    monkeypatch.setenv("COURSE_PROGRESS", "off")
    check("softplus", softplus)
    assert not path.exists()
