"""Module 01 graders: the RNN cell, the sequence, BPTT by hand, and gradient clipping."""

from __future__ import annotations

import torch

from course_lib.grading.core import Grader, as_float64, check_gradients, dtype_name, exercise
from course_lib.rnn import reference as ref

RNN_PARAMS = ["x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "nonlinearity"]
SEQ_PARAMS = ["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "nonlinearity"]
BPTT_PARAMS = ["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "grad_out", "nonlinearity"]
BPTT_KEYS = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _rnn_inputs(g: Grader, B: int, I: int, H: int, S: int | None, dtype=torch.float64) -> dict:
    x = g.randn(B, I, dtype=dtype) if S is None else g.randn(B, S, I, dtype=dtype)
    return dict(
        x=x,
        h=g.randn(B, H, dtype=dtype, scale=0.5),
        weight_ih=g.randn(H, I, dtype=dtype, scale=I**-0.5),
        weight_hh=g.randn(H, H, dtype=dtype, scale=0.9 * H**-0.5),
        bias_ih=g.randn(H, dtype=dtype, scale=0.1),
        bias_hh=g.randn(H, dtype=dtype, scale=0.1),
    )


@exercise("rnn_cell", module="01", title="One step of a vanilla RNN", points=2, difficulty="easy", minutes=10,
          signature="rnn_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity='tanh') "
                    "-> h_new (B, H)")
def grade_rnn_cell(g: Grader, fn) -> None:
    g.check_signature(fn, RNN_PARAMS)
    cases = [(3, 4, 5, torch.float64, "tanh", True), (2, 3, 6, torch.float32, "tanh", True),
             (4, 2, 3, torch.float64, "relu", True), (3, 4, 5, torch.float64, "tanh", False)]
    for B, I, H, dtype, nl, bias in cases:
        args = _rnn_inputs(g, B, I, H, None, dtype)
        if not bias:
            args["bias_ih"] = args["bias_hh"] = None
        case = f"B={B}, I={I}, H={H}, {dtype_name(dtype)}, nonlinearity={nl!r}" + ("" if bias else ", no biases")
        out = g.call(fn, case, args["x"], args["h"], args["weight_ih"], args["weight_hh"], args["bias_ih"],
                     args["bias_hh"], nl)
        g.check_tensor(out, ref.rnn_cell(**as_float64(args), nonlinearity=nl), "h_new", case, dtype=dtype)
    args = _rnn_inputs(g, 3, 4, 5, None)
    check_gradients(g, fn, ref.rnn_cell, "B=3, I=4, H=5, float64", args, wrt=list(args))


@exercise("rnn", module="01", title="An RNN over a whole sequence", points=2, difficulty="easy", minutes=10,
          signature="rnn(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity='tanh') "
                    "-> (out (B, S, H), h_n (B, H))")
def grade_rnn(g: Grader, fn) -> None:
    g.check_signature(fn, SEQ_PARAMS)
    cases = [(2, 7, 3, 4, torch.float64, "tanh"), (3, 5, 2, 6, torch.float32, "tanh"),
             (2, 6, 4, 3, torch.float64, "relu"), (1, 1, 3, 4, torch.float64, "tanh")]
    for B, S, I, H, dtype, nl in cases:
        args = _rnn_inputs(g, B, I, H, S, dtype)
        args["h0"] = args.pop("h")
        case = f"B={B}, S={S}, I={I}, H={H}, {dtype_name(dtype)}, nonlinearity={nl!r}"
        result = g.call(fn, case, args["x"], args["h0"], args["weight_ih"], args["weight_hh"],
                        args["bias_ih"], args["bias_hh"], nl)
        g.expect_pair(result, "(out, h_n)", case)
        out_ref, hn_ref = ref.rnn(**as_float64(args), nonlinearity=nl)
        g.check_tensor(result[0], out_ref, "out", case, dtype=dtype)
        g.check_tensor(result[1], hn_ref, "h_n", case, dtype=dtype)
    args = _rnn_inputs(g, 2, 3, 4, 6)
    args["h0"] = args.pop("h")
    check_gradients(g, fn, ref.rnn, "B=2, S=6, I=3, H=4, float64", args, wrt=list(args))


def _autograd_bptt(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity):
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, h0, weight_ih, weight_hh, bias_ih, bias_hh)]
    with torch.enable_grad():
        out, _ = ref.rnn(*leaves, nonlinearity=nonlinearity)
        grads = torch.autograd.grad((out * grad_out).sum(), leaves)
    return dict(zip(BPTT_KEYS, grads, strict=True))


@exercise("rnn_bptt", module="01", title="Backpropagation through time by hand", points=4, difficulty="hard",
          minutes=40, signature="rnn_bptt(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, "
                                "nonlinearity='tanh') -> dict of gradients with keys x, h0, weight_ih, "
                                "weight_hh, bias_ih, bias_hh")
def grade_rnn_bptt(g: Grader, fn) -> None:
    g.check_signature(fn, BPTT_PARAMS)
    cases = [(2, 6, 3, 4, torch.float64, "tanh"), (3, 1, 2, 3, torch.float64, "tanh"),
             (2, 9, 3, 5, torch.float32, "tanh"), (2, 5, 3, 4, torch.float64, "relu")]
    for B, S, I, H, dtype, nl in cases:
        args = _rnn_inputs(g, B, I, H, S, dtype)
        args["h0"] = args.pop("h")
        # Non-zero h0 and a gradient on every output step: zeros would hide bugs.
        grad_out = g.randn(B, S, H, dtype=dtype)
        case = (f"B={B}, S={S}, I={I}, H={H}, {dtype_name(dtype)}, nonlinearity={nl!r}, "
                "rnn_bptt runs under inference_mode")
        result = g.call(fn, case, args["x"], args["h0"], args["weight_ih"], args["weight_hh"], args["bias_ih"],
                        args["bias_hh"], grad_out, nl, inference=True)
        g.expect(isinstance(result, dict), "types", f"returns a dict ({case})",
                 f"expected a dict of gradients, got {type(result).__name__}")
        missing = [k for k in BPTT_KEYS if k not in result]
        g.expect(not missing, "types", f"has every gradient ({case})", f"missing keys: {', '.join(missing)}")
        want = _autograd_bptt(**as_float64(args), grad_out=grad_out.double(), nonlinearity=nl)
        for key in BPTT_KEYS:
            g.check_tensor(result[key], want[key], f"grad[{key!r}]", case, dtype=dtype)


def clip_reference(grads, max_norm):
    total = torch.sqrt(sum((gr.double() ** 2).sum() for gr in grads))
    factor = min(1.0, max_norm / (float(total) + 1e-6))
    return [gr * factor for gr in grads]


@exercise("clip_grad_norm", module="01", title="Gradient clipping by global norm", points=2, difficulty="easy",
          minutes=10, signature="clip_grad_norm(grads: list of tensors, max_norm: float) -> list of tensors, "
                                "scaled by min(1, max_norm / (total_norm + 1e-6))")
def grade_clip_grad_norm(g: Grader, fn) -> None:
    g.check_signature(fn, ["grads", "max_norm"])
    shapes = [(4, 3), (3,), (2, 2, 2)]
    for scale, max_norm, label in [(10.0, 1.0, "large gradients"), (0.01, 1.0, "small gradients"),
                                   (3.0, 5.0, "norm near the threshold")]:
        grads = [g.randn(*s, scale=scale) for s in shapes]
        case = f"{label}: shapes {shapes}, max_norm={max_norm}"
        out = g.call(fn, case, grads, max_norm)
        g.expect(isinstance(out, (list, tuple)) and len(out) == len(grads), "types", f"returns a list ({case})",
                 f"expected a list of {len(grads)} tensors, got {type(out).__name__}")
        for i, (o, r) in enumerate(zip(out, clip_reference(grads, max_norm), strict=True)):
            g.check_tensor(o, r, f"grads[{i}]", case)
    grads = [g.randn(*s, scale=10.0) for s in shapes]
    out = g.call(fn, "direction check", grads, 1.0)
    cos = sum((o * gr).sum() for o, gr in zip(out, grads, strict=True)) / (
        torch.sqrt(sum((o**2).sum() for o in out)) * torch.sqrt(sum((gr**2).sum() for gr in grads)))
    g.expect(abs(float(cos) - 1) < 1e-9, "properties", "clipping keeps the direction of the whole gradient",
             f"the clipped gradient points elsewhere (cosine {float(cos):.4f}): scale all tensors by one factor")
