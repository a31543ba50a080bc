"""Module 02 graders: the LSTM cell and sequence, the constant error carousel, and the forget-gate bias."""

from __future__ import annotations

import torch
from torch import nn

from course_lib.grading.core import Grader, as_float64, check_gradients, dtype_name, exercise
from course_lib.lstm import reference as ref

CELL_PARAMS = ["x", "state", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def _lstm_inputs(g: Grader, B: int, I: int, H: int, S: int | None, dtype=torch.float64) -> dict:
    """Seeded inputs with a non-zero state and biases on every gate (zeros would hide bugs)."""
    x = g.randn(B, I, dtype=dtype) if S is None else g.randn(B, S, I, dtype=dtype)
    return dict(
        x=x,
        h=g.randn(B, H, dtype=dtype, scale=0.5),
        c=g.randn(B, H, dtype=dtype),
        weight_ih=g.randn(4 * H, I, dtype=dtype, scale=I**-0.5),
        weight_hh=g.randn(4 * H, H, dtype=dtype, scale=H**-0.5),
        bias_ih=g.randn(4 * H, dtype=dtype, scale=0.5),
        bias_hh=g.randn(4 * H, dtype=dtype, scale=0.5),
    )


def _with_state(fn):
    """``fn(x, state, ...)`` as a function of separate h, c tensors, so gradients can reach both."""
    def wrapped(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
        return fn(x, (h, c), weight_ih, weight_hh, bias_ih, bias_hh)
    return wrapped


@exercise("lstm_cell", module="02", title="One step of an LSTM, gate by gate", points=3, difficulty="medium",
          minutes=20, signature="lstm_cell(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> (h, c), "
                                "x (B, I), state = (h, c) each (B, H) or None; weights stacked i, f, g, o")
def grade_lstm_cell(g: Grader, fn) -> None:
    g.check_signature(fn, CELL_PARAMS)
    cases = [(3, 4, 5, torch.float64, "state"), (2, 3, 6, torch.float32, "state"),
             (3, 4, 5, torch.float64, "no biases"), (2, 5, 3, torch.float64, "state=None")]
    for B, I, H, dtype, variant in cases:
        a = _lstm_inputs(g, B, I, H, None, dtype)
        if variant == "no biases":
            a["bias_ih"] = a["bias_hh"] = None
        state = None if variant == "state=None" else (a["h"], a["c"])
        case = f"B={B}, I={I}, H={H}, {dtype_name(dtype)}" + ("" if variant == "state" else f", {variant}")
        result = g.call(fn, case, a["x"], state, a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
        g.expect_pair(result, "(h, c)", case)
        a64 = as_float64(a)
        state64 = None if state is None else (a64["h"], a64["c"])
        h_ref, c_ref = ref.lstm_cell(a64["x"], state64, a64["weight_ih"], a64["weight_hh"], a64["bias_ih"],
                                     a64["bias_hh"])
        g.check_tensor(result[0], h_ref, "h", case, dtype=dtype)
        g.check_tensor(result[1], c_ref, "c", case, dtype=dtype)
    a = _lstm_inputs(g, 3, 4, 5, None)
    check_gradients(g, _with_state(fn), _with_state(ref.lstm_cell), "B=3, I=4, H=5, float64", a, wrt=list(a))


@exercise("lstm", module="02", title="An LSTM over a whole sequence", points=2, difficulty="easy", minutes=10,
          signature="lstm(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> (out (B, S, H), "
                    "(h_n, c_n)), x (B, S, I), state = (h0, c0) each (B, H) or None for zeros")
def grade_lstm(g: Grader, fn) -> None:
    g.check_signature(fn, CELL_PARAMS)
    cases = [(2, 7, 3, 4, torch.float64, "state"), (3, 5, 2, 6, torch.float32, "state"),
             (2, 6, 4, 3, torch.float64, "state=None"), (2, 5, 3, 4, torch.float64, "no biases"),
             (1, 1, 3, 4, torch.float64, "state")]
    for B, S, I, H, dtype, variant in cases:
        a = _lstm_inputs(g, B, I, H, S, dtype)
        if variant == "no biases":
            a["bias_ih"] = a["bias_hh"] = None
        state = None if variant == "state=None" else (a["h"], a["c"])
        case = f"B={B}, S={S}, I={I}, H={H}, {dtype_name(dtype)}" + ("" if variant == "state" else f", {variant}")
        result = g.call(fn, case, a["x"], state, a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
        g.expect_pair(result, "(out, (h_n, c_n))", case)
        g.expect_pair(result[1], "(h_n, c_n) as the second element", case)
        a64 = as_float64(a)
        state64 = None if state is None else (a64["h"], a64["c"])
        out_ref, (hn_ref, cn_ref) = ref.lstm(a64["x"], state64, a64["weight_ih"], a64["weight_hh"],
                                             a64["bias_ih"], a64["bias_hh"])
        g.check_tensor(result[0], out_ref, "out", case, dtype=dtype)
        g.check_tensor(result[1][0], hn_ref, "h_n", case, dtype=dtype)
        g.check_tensor(result[1][1], cn_ref, "c_n", case, dtype=dtype)
    a = _lstm_inputs(g, 2, 3, 4, 6)
    check_gradients(g, _with_state(fn), _with_state(ref.lstm), "B=2, S=6, I=3, H=4, float64", a, wrt=list(a))


@exercise("cec_gradient", module="02", title="The constant error carousel: dc_S/dc_0 along the cell path",
          points=2, difficulty="easy", minutes=10,
          signature="cec_gradient(f_pre) -> (B, H): the diagonal of dc_S/dc_0 along the cell path, for "
                    "forget-gate pre-activations f_pre (B, S, H)")
def grade_cec_gradient(g: Grader, fn) -> None:
    g.check_signature(fn, ["f_pre"])
    cases = [(2, 5, 3, torch.float64, 0.0, 1.0), (3, 1, 4, torch.float64, 0.0, 1.0),
             (2, 8, 5, torch.float32, 2.0, 1.0), (4, 40, 6, torch.float64, 3.0, 2.0)]
    for B, S, H, dtype, offset, scale in cases:
        f_pre = g.randn(B, S, H, dtype=dtype, scale=scale) + offset
        case = f"f_pre: ({B}, {S}, {H}) {dtype_name(dtype)}" + (f", forget bias {offset:g}" if offset else "")
        out = g.call(fn, case, f_pre)
        g.check_tensor(out, ref.cec_gradient(f_pre.double()), "dc_S/dc_0", case, dtype=dtype)
    f_pre = g.randn(2, 6, 3)
    check_gradients(g, fn, ref.cec_gradient, "f_pre: (2, 6, 3) float64", {"f_pre": f_pre}, wrt=["f_pre"])


@exercise("forget_half_life", module="02", title="How long a forget gate remembers", points=1,
          difficulty="warm-up", minutes=5,
          signature="forget_half_life(forget_bias) -> tensor of the same shape: steps n with "
                    "sigmoid(forget_bias)**n == 1/2")
def grade_forget_half_life(g: Grader, fn) -> None:
    g.check_signature(fn, ["forget_bias"])
    cases = [(torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64), "forget_bias = [0, 1, 3], float64"),
             (g.randn(4, 5, scale=2.0).to(torch.float32), "forget_bias: (4, 5) float32"),
             (torch.tensor([-4.0, 6.0, 10.0], dtype=torch.float64), "forget_bias = [-4, 6, 10], float64")]
    for b, case in cases:
        out = g.call(fn, case, b)
        g.check_tensor(out, ref.forget_half_life(b.double()), "half-life", case, dtype=b.dtype)
    b = torch.tensor([0.5, 2.0], dtype=torch.float64)
    n = g.call(fn, "forget_bias = [0.5, 2], float64", b).detach().double()
    kept = torch.sigmoid(b) ** n
    g.expect(bool(torch.allclose(kept, torch.full_like(kept, 0.5), atol=1e-10)), "properties",
             "sigmoid(b) ** half_life == 1/2",
             f"after your number of steps the stored value keeps a fraction {kept.tolist()} of itself, not 1/2")


def _make_lstm(g: Grader, I: int, H: int, layers: int, bidirectional: bool, dtype: torch.dtype) -> nn.LSTM:
    """An nn.LSTM whose every parameter comes from the grader's generator (no global RNG)."""
    module = nn.LSTM(I, H, num_layers=layers, bidirectional=bidirectional, batch_first=True).to(dtype)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(g.randn(*p.shape, dtype=dtype, scale=0.3))
    return module


def _snapshot(module: nn.Module) -> dict[str, tuple[nn.Parameter, torch.Tensor]]:
    return {n: (p, p.detach().clone()) for n, p in module.named_parameters()}


@exercise("init_forget_bias", module="02", title="Initialise the forget-gate bias of an nn.LSTM", points=2,
          difficulty="easy", minutes=10,
          signature="init_forget_bias(lstm_module: nn.LSTM, value: float) -> the same module, changed in place: "
                    "in every layer and direction, bias_ih + bias_hh on the forget rows (H:2H) equals value")
def grade_init_forget_bias(g: Grader, fn) -> None:
    g.check_signature(fn, ["lstm_module", "value"])
    cases = [(3, 4, 1, False, 1.0, torch.float32), (2, 5, 2, False, 3.0, torch.float32),
             (3, 3, 2, True, 2.0, torch.float64), (2, 4, 1, False, -1.5, torch.float64)]
    for I, H, layers, bidi, value, dtype in cases:
        module = _make_lstm(g, I, H, layers, bidi, dtype)
        before = _snapshot(module)
        case = (f"nn.LSTM({I}, {H}, num_layers={layers}" + (", bidirectional=True" if bidi else "")
                + f"), {dtype_name(dtype)}, value={value:g}")
        result = g.call(fn, case, module, value)
        g.expect(result is module, "types", f"returns the module it was given ({case})",
                 f"expected the same nn.LSTM back (changed in place), got {type(result).__name__}")
        params = dict(module.named_parameters())
        g.expect(set(params) == set(before) and all(params[n] is p for n, (p, _) in before.items()), "types",
                 f"keeps the same Parameter objects ({case})",
                 "a parameter was replaced by a new object: an optimizer built before would no longer update "
                 "it; change the values in place under torch.no_grad()")
        suffixes = [f"l{k}{d}" for k in range(layers) for d in (("", "_reverse") if bidi else ("",))]
        for s in suffixes:
            forget = params[f"bias_ih_{s}"][H:2 * H] + params[f"bias_hh_{s}"][H:2 * H]
            g.check_close(forget.detach(), torch.full((H,), value, dtype=torch.float64),
                          f"bias_ih_{s} + bias_hh_{s} on the forget rows", case)
        changed = []
        for n, (p, old) in before.items():
            keep = torch.ones_like(old, dtype=torch.bool)
            if n.startswith("bias_"):
                keep[H:2 * H] = False
            if not torch.equal(p.detach()[keep], old[keep]):
                changed.append(n)
        g.expect(not changed, "properties", f"leaves every other entry unchanged ({case})",
                 f"entries outside the forget-gate rows changed in: {', '.join(changed)} "
                 "(rows are stacked i, f, g, o: the forget gate is rows H:2H of each bias)")
        g.expect(all(p.requires_grad for p in params.values()), "properties", f"parameters still trainable ({case})",
                 "some parameters no longer require gradients")
