"""The grading core's diagnosis: mistake catalogues, the status of every output, bool outputs, rules.

A toy exercise is registered here (id ``_toy_pair``, module ``99``) so the mechanism is tested on its
own; each grader module's tests assert the diagnosis text of its real catalogue.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import grade_outcome

from course_lib.grading import check
from course_lib.grading.core import EXERCISES, MISTAKES, Grader, as_float64, check_gradients, exercise, mistake


def _toy_reference(x, w):
    """(softmax(x w) over the last axis, x w)."""
    s = x @ w
    return torch.softmax(s, dim=-1), s


@mistake("_toy_pair", "the softmax runs over the rows (dim=-2) instead of the last axis")
def _toy_wrong_axis(x, w):
    s = x @ w
    return torch.softmax(s, dim=-2), s


@mistake("_toy_pair", "the scores are computed as w x instead of x w (the product in the wrong order)")
def _toy_wrong_order(x, w):
    s = (w @ x.transpose(-2, -1)).transpose(-2, -1)
    return torch.softmax(s, dim=-1), s


if "_toy_pair" not in EXERCISES:

    @exercise("_toy_pair", module="99", title="toy: softmax of a product", points=1, difficulty="easy", minutes=1,
              signature="toy(x, w) -> (p, s)")
    def _grade_toy(g: Grader, fn) -> None:
        g.check_signature(fn, ["x", "w"])
        for dtype in (torch.float64, torch.float32):
            args = dict(x=g.randn(3, 4, dtype=dtype), w=g.randn(4, 4, dtype=dtype))
            case = f"x: (3, 4), w: (4, 4), {dtype}"
            result = g.call(fn, case, **args)
            g.check_outputs(result, _toy_reference(**as_float64(args)), ("p", "s"), case, dtype=dtype, args=args)
        args = dict(x=g.randn(3, 4), w=g.randn(4, 4))
        check_gradients(g, fn, _toy_reference, "x: (3, 4) float64", args, wrt=["x", "w"])

    @exercise("_toy_mask", module="99", title="toy: lower-triangular mask", points=1, difficulty="easy", minutes=1,
              signature="toy(n) -> bool (n, n)")
    def _grade_toy_mask(g: Grader, fn) -> None:
        out = g.call(fn, "n=4", 4)
        g.check_tensor(out, torch.ones(4, 4, dtype=torch.bool).tril(), "mask", "n=4")

    @exercise("_toy_rules", module="99", title="toy: softmax without F.softmax or autograd", points=1,
              difficulty="easy", minutes=1, signature="toy(x) -> softmax(x)")
    def _grade_toy_rules(g: Grader, fn) -> None:
        x = g.randn(3, 5)
        out, record = g.call_recording(fn, "x: (3, 5)", x, inference=True)
        g.check_tensor(out, torch.softmax(x, -1), "p", "x: (3, 5)")
        g.forbid(record, {"softmax": "compute exp and the normalising sum yourself",
                          "autograd": "this exercise is about computing it by hand"}, "x: (3, 5)")


def test_a_correct_function_passes_and_runs_no_diagnosis():
    passed, stage, text = grade_outcome("_toy_pair", lambda x, w: _toy_reference(x, w))
    assert passed, text
    assert "diagnosis" not in text


@pytest.mark.parametrize("wrong", MISTAKES["_toy_pair"], ids=lambda m: m.fn.__name__)
def test_each_catalogued_mistake_is_named(wrong):
    passed, stage, text = grade_outcome("_toy_pair", wrong.fn)
    assert not passed and stage == "values"
    assert f"your output matches what you get when {wrong.description}" in text


def test_status_of_every_output_is_reported():
    def p_wrong(x, w):
        p, s = _toy_reference(x, w)
        return p * 1.1, s

    text = grade_outcome("_toy_pair", p_wrong)[2]
    assert "status: p ✗, s ✓" in text
    assert "right: s; wrong: p" in text
    assert "diagnosis" not in text


def test_a_structure_error_names_the_expected_tuple():
    text = grade_outcome("_toy_pair", lambda x, w: x @ w)[2]
    assert "expected a pair (p, s), got Tensor" in text


def test_gradient_status_lists_every_gradient():
    class ScaledGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, w):
            return w.clone()

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad

    def wrong_grad_w(x, w):
        return _toy_reference(x, ScaledGrad.apply(w))

    passed, stage, text = grade_outcome("_toy_pair", wrong_grad_w)
    assert stage == "gradients"
    assert "status: grad['x'] ✓, grad['w'] ✗" in text


def test_bool_outputs_list_wrong_positions_without_relative_errors():
    passed, stage, text = grade_outcome("_toy_mask", lambda n: torch.ones(n, n, dtype=torch.bool).tril(1))
    assert stage == "values"
    assert "3 of 16 entries wrong" in text
    assert "True where it should be False at [0, 1], [1, 2], [2, 3]" in text
    assert "rel error" not in text


def test_rules_pass_for_a_handwritten_function():
    def by_hand(x):
        e = torch.exp(x - x.amax(-1, keepdim=True))
        return e / e.sum(-1, keepdim=True)

    passed, _, text = grade_outcome("_toy_rules", by_hand)
    assert passed, text


def test_rules_catch_a_forbidden_builtin():
    passed, stage, text = grade_outcome("_toy_rules", lambda x: F.softmax(x, dim=-1))
    assert stage == "rules"
    assert "torch.nn.functional.softmax" in text and "compute exp and the normalising sum yourself" in text


def test_rules_catch_autograd_switched_back_on_inside_inference_mode():
    def sneaky(x):
        with torch.inference_mode(False), torch.enable_grad():
            z = x.clone().requires_grad_(True)
            e = torch.exp(z - z.detach().amax(-1, keepdim=True))
            total = e.sum(-1, keepdim=True)
            torch.autograd.grad(total.sum(), z)
        return (e / total).detach()

    passed, stage, text = grade_outcome("_toy_rules", sneaky)
    assert stage == "rules"
    assert "this exercise is about computing it by hand" in text


def test_toy_exercises_do_not_leak_into_the_course_modules():
    from course_lib.grading import exercises_for_module

    assert all(e.module != "99" for m in ("00", "01", "02", "03") for e in exercises_for_module(m))
    result = check("_toy_pair", lambda x, w: _toy_reference(x, w), record=False)
    assert result.passed
