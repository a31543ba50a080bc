"""Module 00: a warm-up exercise that shows how feedback reads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.grading.core import Grader, exercise


@exercise("softplus", module="00", title="A numerically stable softplus", points=1, difficulty="warm-up",
          minutes=5, signature="softplus(x) -> log(1 + exp(x)), same shape and dtype as x, finite for any finite x")
def grade_softplus(g: Grader, fn) -> None:
    g.check_signature(fn, ["x"])
    for dtype in (torch.float64, torch.float32):
        x = g.randn(4, 6, dtype=dtype, scale=3.0)
        case = f"x: (4, 6) {str(dtype).replace('torch.', '')}"
        g.check_tensor(g.call(fn, case, x), F.softplus(x.double()), "softplus(x)", case, dtype=dtype)
    # exp(x) overflows for x > 88 in float32 (709 in float64): log(1 + exp(x)) then becomes inf.
    x = torch.tensor([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], dtype=torch.float32)
    case = "x with entries from -1000 to 1000, float32"
    g.check_tensor(g.call(fn, case, x), F.softplus(x.double()), "softplus(x)", case, dtype=torch.float32)
