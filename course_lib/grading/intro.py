"""Module 00: a warm-up exercise that shows how feedback reads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.grading.core import Grader, dtype_name, exercise, mistake

# --------------------------------------------------------------------------------------------
# The catalogue of common softplus mistakes (each returns what the mistaken code returns)
# --------------------------------------------------------------------------------------------


@mistake("softplus", "log(1 + exp(x)) is typed in literally: exp(x) overflows to inf once x > 88 in float32 "
         "(709 in float64), and log(1 + inf) = inf; torch.log1p(torch.exp(x)) overflows the same way",
         native_dtype=True)
def _softplus_naive(x):
    return torch.log(1 + torch.exp(x))


@mistake("softplus", "only the limit max(x, 0) is returned: the log(1 + exp(-|x|)) term is missing")
def _softplus_relu_only(x):
    return torch.clamp(x, min=0)


@mistake("softplus", "the max(x, 0) term is missing: log(1 + exp(-|x|)) alone is the softplus of -|x|")
def _softplus_no_max(x):
    return torch.log1p(torch.exp(-x.abs()))


@mistake("softplus", "the exponent is -x instead of -|x|: max(x, 0) + log(1 + exp(-x)) overflows for large "
         "negative x", native_dtype=True)
def _softplus_no_abs(x):
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x))


@mistake("softplus", "log(1 + x) is computed instead of log(1 + exp(x)) (the exp is missing)")
def _softplus_no_exp(x):
    return torch.log1p(x)


@mistake("softplus", "the log term is subtracted: max(x, 0) - log(1 + exp(-|x|))")
def _softplus_minus(x):
    return torch.clamp(x, min=0) - torch.log1p(torch.exp(-x.abs()))


@exercise("softplus", module="00", title="A numerically stable softplus", points=1, difficulty="warm-up",
          minutes=5, signature="softplus(x) -> log(1 + exp(x)), same shape and dtype as x, finite for any finite x")
def grade_softplus(g: Grader, fn) -> None:
    g.check_signature(fn, ["x"])
    for dtype in (torch.float64, torch.float32):
        x = g.randn(4, 6, dtype=dtype, scale=3.0)
        case = f"x: (4, 6) {dtype_name(dtype)}"
        g.check_tensor(g.call(fn, case, x), F.softplus(x.double()), "softplus(x)", case, dtype=dtype,
                       args=dict(x=x))
    # exp(x) overflows for x > 88 in float32 (709 in float64): log(1 + exp(x)) then becomes inf.
    x = torch.tensor([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], dtype=torch.float32)
    case = "x with entries from -1000 to 1000, float32"
    g.check_tensor(g.call(fn, case, x), F.softplus(x.double()), "softplus(x)", case, dtype=torch.float32,
                   args=dict(x=x))
