"""Module 01 graders: the RNN cell, the sequence, BPTT by hand, and gradient clipping."""

from __future__ import annotations

import torch

from course_lib.grading.core import Grader, as_float64, check_gradients, dtype_name, exercise, mistake
from course_lib.rnn import reference as ref

RNN_PARAMS = ["x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "nonlinearity"]
SEQ_PARAMS = ["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "nonlinearity"]
BPTT_PARAMS = ["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "grad_out", "nonlinearity"]
BPTT_KEYS = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")

# The statement of module 01 says: do not call torch.nn.RNN / nn.RNNCell / torch.rnn_tanh_cell (they run
# torch.rnn_tanh(_cell) or torch.rnn_relu(_cell) inside).
RNN_BUILTINS = {
    "rnn_tanh": "the exercise is to write the RNN step yourself; torch.nn.RNN, nn.RNNCell and "
                "torch.rnn_tanh_cell do it for you",
    "rnn_relu": "the exercise is to write the RNN step yourself; torch.nn.RNN, nn.RNNCell and "
                "torch.rnn_relu_cell do it for you",
}


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


# --------------------------------------------------------------------------------------------
# rnn_cell: the catalogue of common mistakes, then the grader
# --------------------------------------------------------------------------------------------

_ACT = {"tanh": torch.tanh, "relu": torch.relu}


def _biases(bias_ih, bias_hh):
    return (0.0 if bias_ih is None else bias_ih), (0.0 if bias_hh is None else bias_hh)


@mistake("rnn_cell", "the nonlinearity is missing: h_new is the pre-activation W_ih x + b_ih + W_hh h + b_hh itself")
def _cell_no_activation(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    b_ih, b_hh = _biases(bias_ih, bias_hh)
    return x @ weight_ih.T + b_ih + h @ weight_hh.T + b_hh


@mistake("rnn_cell", "the nonlinearity is applied to the input term x @ weight_ih.T alone, before the recurrent "
         "term and the biases are added")
def _cell_activation_on_input_only(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    b_ih, b_hh = _biases(bias_ih, bias_hh)
    return _ACT[nonlinearity](x @ weight_ih.T) + h @ weight_hh.T + b_ih + b_hh


@mistake("rnn_cell", "the recurrent term W_hh h is missing: the new state ignores the old one")
def _cell_no_recurrence(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    b_ih, b_hh = _biases(bias_ih, bias_hh)
    return _ACT[nonlinearity](x @ weight_ih.T + b_ih + b_hh)


@mistake("rnn_cell", "weight_hh is used transposed: h @ weight_hh instead of h @ weight_hh.T")
def _cell_w_hh_transposed(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    b_ih, b_hh = _biases(bias_ih, bias_hh)
    return _ACT[nonlinearity](x @ weight_ih.T + b_ih + h @ weight_hh + b_hh)


@mistake("rnn_cell", "bias_hh is left out (only bias_ih is added)")
def _cell_no_bias_hh(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    b_ih, _ = _biases(bias_ih, bias_hh)
    return _ACT[nonlinearity](x @ weight_ih.T + b_ih + h @ weight_hh.T)


@mistake("rnn_cell", "bias_ih is left out (only bias_hh is added)")
def _cell_no_bias_ih(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    _, b_hh = _biases(bias_ih, bias_hh)
    return _ACT[nonlinearity](x @ weight_ih.T + h @ weight_hh.T + b_hh)


@mistake("rnn_cell", "bias_ih is added twice and bias_hh not at all")
def _cell_bias_ih_twice(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    b_ih, _ = _biases(bias_ih, bias_hh)
    return _ACT[nonlinearity](x @ weight_ih.T + 2 * b_ih + h @ weight_hh.T)


@mistake("rnn_cell", "bias_ih is added twice (and bias_hh once)")
def _cell_bias_ih_twice_plus_hh(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    b_ih, b_hh = _biases(bias_ih, bias_hh)
    return _ACT[nonlinearity](x @ weight_ih.T + 2 * b_ih + h @ weight_hh.T + b_hh)


@mistake("rnn_cell", "nonlinearity='relu' is ignored: tanh is always used")
def _cell_always_tanh(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    return ref.rnn_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh, "tanh")


@mistake("rnn_cell", "nonlinearity='tanh' is ignored: relu is always used")
def _cell_always_relu(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    return ref.rnn_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh, "relu")


def _cell_range_notes(out, nonlinearity) -> list[str]:
    """The range of the nonlinearity, checked on the learner's output."""
    h = out.detach()
    if nonlinearity == "tanh" and bool((h.abs() >= 1).any()):
        return ["some entries of h_new are outside (-1, 1), the range of tanh: is the tanh applied last?"]
    if nonlinearity == "relu" and bool((h < 0).any()):
        return ["some entries of h_new are negative, but relu's output is >= 0: is the relu applied last?"]
    return []


@exercise("rnn_cell", module="01", title="One step of a vanilla RNN", points=2, difficulty="easy", minutes=10,
          signature="rnn_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity='tanh') "
                    "-> h_new (B, H)")
def grade_rnn_cell(g: Grader, fn) -> None:
    g.check_signature(fn, RNN_PARAMS)
    records = []
    cases = [(3, 4, 5, torch.float64, "tanh", True), (2, 3, 6, torch.float32, "tanh", True),
             (4, 2, 3, torch.float64, "relu", True), (3, 4, 5, torch.float64, "tanh", False)]
    for B, I, H, dtype, nl, bias in cases:
        args = _rnn_inputs(g, B, I, H, None, dtype)
        if not bias:
            args["bias_ih"] = args["bias_hh"] = None
        case = f"B={B}, I={I}, H={H}, {dtype_name(dtype)}, nonlinearity={nl!r}" + ("" if bias else ", no biases")
        out, record = g.call_recording(fn, case, args["x"], args["h"], args["weight_ih"], args["weight_hh"],
                                       args["bias_ih"], args["bias_hh"], nl, operators=False)
        records.append(record)
        args["nonlinearity"] = nl
        g.check_tensor(out, ref.rnn_cell(**as_float64(args)), "h_new", case, dtype=dtype, args=args,
                       notes=lambda out=out, nl=nl: _cell_range_notes(out, nl))
    args = _rnn_inputs(g, 3, 4, 5, None)
    check_gradients(g, fn, ref.rnn_cell, "B=3, I=4, H=5, float64", args, wrt=list(args))
    g.forbid(records, RNN_BUILTINS, "every case")


# --------------------------------------------------------------------------------------------
# rnn
# --------------------------------------------------------------------------------------------


def _run(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, carry=True, backwards=False):
    """The states after every step, in the order the loop visits them."""
    h, states = h0, []
    steps = range(x.shape[1] - 1, -1, -1) if backwards else range(x.shape[1])
    for t in steps:
        h = ref.rnn_cell(x[:, t], h if carry else h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
        states.append(h)
    return states


@mistake("rnn", "the state is not carried: every step starts again from h0")
def _rnn_not_carried(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    states = _run(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, carry=False)
    return torch.stack(states, dim=1), states[-1]


@mistake("rnn", "h0 is ignored: the loop starts from a zero state")
def _rnn_zero_start(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    states = _run(x, torch.zeros_like(h0), weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
    return torch.stack(states, dim=1), states[-1]


@mistake("rnn", "h_n is the state after the first step instead of the last")
def _rnn_hn_first(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    states = _run(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
    return torch.stack(states, dim=1), states[0]


@mistake("rnn", "h_n is the initial state h0 instead of the last state")
def _rnn_hn_h0(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    states = _run(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
    return torch.stack(states, dim=1), h0


@mistake("rnn", "out holds the states before each step (h0 ... h_{S-1}) instead of after it (h1 ... h_S)")
def _rnn_out_shifted(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    states = _run(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
    return torch.stack([h0] + states[:-1], dim=1), states[-1]


@mistake("rnn", "the loop runs over the sequence backwards (x[:, S - 1] first)")
def _rnn_backwards(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    states = _run(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, backwards=True)
    return torch.stack(states, dim=1), states[-1]


@mistake("rnn", "nonlinearity='relu' is ignored: tanh is always used")
def _rnn_always_tanh(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    return ref.rnn(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, "tanh")


@exercise("rnn", module="01", title="An RNN over a whole sequence", points=2, difficulty="easy", minutes=10,
          signature="rnn(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity='tanh') "
                    "-> (out (B, S, H), h_n (B, H))")
def grade_rnn(g: Grader, fn) -> None:
    g.check_signature(fn, SEQ_PARAMS)
    records = []
    cases = [(2, 7, 3, 4, torch.float64, "tanh"), (3, 5, 2, 6, torch.float32, "tanh"),
             (2, 6, 4, 3, torch.float64, "relu"), (1, 1, 3, 4, torch.float64, "tanh")]
    for B, S, I, H, dtype, nl in cases:
        args = _rnn_inputs(g, B, I, H, S, dtype)
        args["h0"] = args.pop("h")
        case = f"B={B}, S={S}, I={I}, H={H}, {dtype_name(dtype)}, nonlinearity={nl!r}"
        result, record = g.call_recording(fn, case, args["x"], args["h0"], args["weight_ih"], args["weight_hh"],
                                          args["bias_ih"], args["bias_hh"], nl, operators=False)
        records.append(record)
        args["nonlinearity"] = nl
        g.check_outputs(result, ref.rnn(**as_float64(args)), ("out", "h_n"), case, dtype=dtype, args=args)
    args = _rnn_inputs(g, 2, 3, 4, 6)
    args["h0"] = args.pop("h")
    check_gradients(g, fn, ref.rnn, "B=2, S=6, I=3, H=4, float64", args, wrt=list(args))
    g.forbid(records, RNN_BUILTINS, "every case")


# --------------------------------------------------------------------------------------------
# rnn_bptt
# --------------------------------------------------------------------------------------------


def _bptt_by_hand(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity, *, first_step=0,
                  deriv_at="h_t", deriv=None, h0_grad="carry", bias_steps="all", grad_out_steps="all",
                  w_hh_state="h_prev", g_after_deriv=False):
    """BPTT written out with switches: each catalogued mistake is one switch away from the right answer."""
    out, _ = ref.rnn(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
    S = x.shape[1]
    states = [h0] + [out[:, t] for t in range(S)]  # states[t + 1] is the output of step t (0-based)
    deriv = deriv or nonlinearity
    d_w_ih, d_w_hh = torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
    d_b = torch.zeros_like(weight_hh[0])
    d_x = torch.zeros_like(x)
    carry = torch.zeros_like(h0)
    da = torch.zeros_like(h0)
    for t in range(S - 1, first_step - 1, -1):
        g_t = grad_out[:, t] if (grad_out_steps == "all" or t == S - 1) else torch.zeros_like(h0)
        at = states[t + 1] if deriv_at == "h_t" else states[t]
        phi = (1 - at**2) if deriv == "tanh" else (at > 0).to(x.dtype)
        da = carry * phi + g_t if g_after_deriv else (carry + g_t) * phi
        d_w_ih = d_w_ih + da.T @ x[:, t]
        d_w_hh = d_w_hh + da.T @ (states[t] if w_hh_state == "h_prev" else states[t + 1])
        if bias_steps == "all" or t == S - 1:
            d_b = d_b + da.sum(0)
        d_x[:, t] = da @ weight_ih
        carry = da @ weight_hh
    h0_g = {"carry": carry, "zeros": torch.zeros_like(h0), "eps": da}[h0_grad]
    return {"x": d_x, "h0": h0_g, "weight_ih": d_w_ih, "weight_hh": d_w_hh, "bias_ih": d_b, "bias_hh": d_b.clone()}


def _bptt_mistake(description: str, **switches) -> None:
    def wrong(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity="tanh"):
        return _bptt_by_hand(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity, **switches)

    wrong.__name__ = wrong.__qualname__ = "rnn_bptt_" + "_".join(f"{k}_{v}" for k, v in switches.items())
    mistake("rnn_bptt", description)(wrong)


_bptt_mistake("the backward loop stops one step short: the first step (index 0 in the code, t = 1 in the "
              "equations) is never visited", first_step=1)
_bptt_mistake("φ′ is evaluated at the previous state h_{t-1} instead of at the step's own output h_t",
              deriv_at="h_prev")
_bptt_mistake("grad_out enters at the last step only: g_t of the earlier steps is never added to δ_t",
              grad_out_steps="last")
_bptt_mistake("g_t is added after the φ′ factor: ε_t = W_hhᵀε_{t+1} ⊙ φ′ + g_t instead of "
              "(g_t + W_hhᵀε_{t+1}) ⊙ φ′", g_after_deriv=True)
_bptt_mistake("the gradient of h0 is left at zero (it is W_hhᵀ ε_1, what the loop carries out of the first step)",
              h0_grad="zeros")
_bptt_mistake("the gradient of h0 is ε_1 itself, without the last product with W_hh", h0_grad="eps")
_bptt_mistake("the bias gradients take ε from the last step only instead of summing over all steps",
              bias_steps="last")
_bptt_mistake("∂L/∂W_hh sums ε_t h_tᵀ (the step's own output) instead of ε_t h_{t-1}ᵀ (the state it read)",
              w_hh_state="h_t")
_bptt_mistake("nonlinearity='relu' is ignored: φ′ is always tanh′ = 1 − h_t²", deriv="tanh")

# The statement: "without autograd". Autograd is off where the grader calls the function (inference
# mode); switching it back on inside the function is caught by recording what it calls.
BPTT_RULES = {"autograd": "the exercise is to backpropagate by hand, without autograd "
                          "(torch.autograd.grad, .backward())"}


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
    records = []
    cases = [(2, 6, 3, 4, torch.float64, "tanh"), (3, 1, 2, 3, torch.float64, "tanh"),
             (2, 9, 3, 5, torch.float32, "tanh"), (2, 5, 3, 4, torch.float64, "relu")]
    for B, S, I, H, dtype, nl in cases:
        args = _rnn_inputs(g, B, I, H, S, dtype)
        args["h0"] = args.pop("h")
        # Non-zero h0 and a gradient on every output step: zeros would hide bugs.
        grad_out = g.randn(B, S, H, dtype=dtype)
        case = (f"B={B}, S={S}, I={I}, H={H}, {dtype_name(dtype)}, nonlinearity={nl!r}, "
                "rnn_bptt runs under inference_mode")
        result, record = g.call_recording(fn, case, args["x"], args["h0"], args["weight_ih"], args["weight_hh"],
                                          args["bias_ih"], args["bias_hh"], grad_out, nl, inference=True,
                                          operators=False)
        records.append(record)
        g.expect(isinstance(result, dict), "types", f"returns a dict ({case})",
                 f"expected a dict of gradients, got {type(result).__name__}")
        missing = [k for k in BPTT_KEYS if k not in result]
        g.expect(not missing, "types", f"has every gradient ({case})", f"missing keys: {', '.join(missing)}")
        args.update(grad_out=grad_out, nonlinearity=nl)
        want = _autograd_bptt(**as_float64(args))
        g.check_outputs({k: result[k] for k in BPTT_KEYS}, want, {k: f"grad[{k!r}]" for k in BPTT_KEYS}, case,
                        dtype=dtype, args=args, select=lambda grads: {k: grads[k] for k in BPTT_KEYS})
    g.forbid(records, {**BPTT_RULES, **RNN_BUILTINS}, "every case")


# --------------------------------------------------------------------------------------------
# clip_grad_norm
# --------------------------------------------------------------------------------------------


def _scaled(grads, factor):
    return [gr * factor for gr in grads]


@mistake("clip_grad_norm", "each tensor is clipped by its own norm instead of all tensors by one factor from their "
         "joint norm")
def _clip_per_tensor(grads, max_norm):
    return [gr * min(1.0, max_norm / (float(gr.norm()) + 1e-6)) for gr in grads]


@mistake("clip_grad_norm", "the gradients are always rescaled to max_norm, also when their norm is already below "
         "it (the min(1, ...) is missing)")
def _clip_always(grads, max_norm):
    total = float(torch.sqrt(sum((gr**2).sum() for gr in grads)))
    return _scaled(grads, max_norm / (total + 1e-6))


@mistake("clip_grad_norm", "the squared norm Σ g² is used as the norm (the square root is missing)")
def _clip_no_sqrt(grads, max_norm):
    total = float(sum((gr**2).sum() for gr in grads))
    return _scaled(grads, min(1.0, max_norm / (total + 1e-6)))


@mistake("clip_grad_norm", "the norm is the sum of the per-tensor norms Σ‖g_p‖ instead of √(Σ‖g_p‖²)")
def _clip_sum_of_norms(grads, max_norm):
    total = float(sum(gr.norm() for gr in grads))
    return _scaled(grads, min(1.0, max_norm / (total + 1e-6)))


@mistake("clip_grad_norm", "the norm averages the squares (a mean) instead of summing them")
def _clip_mean_squares(grads, max_norm):
    total = float(torch.sqrt(torch.cat([gr.flatten() ** 2 for gr in grads]).mean()))
    return _scaled(grads, min(1.0, max_norm / (total + 1e-6)))


@mistake("clip_grad_norm", "every entry is clamped to [-max_norm, max_norm]: clipping by value, not by norm")
def _clip_by_value(grads, max_norm):
    return [gr.clamp(-max_norm, max_norm) for gr in grads]


def _clip_notes(out, grads, max_norm) -> list[str]:
    """Properties of the learner's result that point at the mistake: one factor or several, the joint norm."""
    out = [o.detach().double() for o in out]
    factors = [float((o * gr).sum() / (gr * gr).sum()) for o, gr in zip(out, grads, strict=True)]
    notes = []
    if max(factors) - min(factors) > 1e-6 * max(abs(f) for f in factors):
        notes.append("your tensors were scaled by different factors (" + ", ".join(f"{f:.3g}" for f in factors)
                     + "): clipping by the global norm scales every tensor by the same factor")
    total_in = float(torch.sqrt(sum((gr**2).sum() for gr in grads)))
    total_out = float(torch.sqrt(sum((o**2).sum() for o in out)))
    if total_out > max_norm * (1 + 1e-6):
        notes.append(f"the joint norm of your result is {total_out:.4g}, above max_norm={max_norm:g}")
    if total_in < max_norm and any(not torch.allclose(o, gr) for o, gr in zip(out, grads, strict=True)):
        notes.append(f"the joint norm of these gradients is already below max_norm={max_norm:g}: they should "
                     "come back unchanged")
    return notes


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
        g.check_outputs(list(out), clip_reference(grads, max_norm), [f"grads[{i}]" for i in range(len(grads))],
                        case, args=dict(grads=grads, max_norm=max_norm),
                        notes=lambda out=out, grads=grads, max_norm=max_norm: _clip_notes(out, grads, max_norm))
    grads = [g.randn(*s, scale=10.0) for s in shapes]
    out = g.call(fn, "direction check", grads, 1.0)
    cos = sum((o * gr).sum() for o, gr in zip(out, grads, strict=True)) / (
        torch.sqrt(sum((o**2).sum() for o in out)) * torch.sqrt(sum((gr**2).sum() for gr in grads)))
    g.expect(abs(float(cos) - 1) < 1e-9, "properties", "clipping keeps the direction of the whole gradient",
             f"the clipped gradient points elsewhere (cosine {float(cos):.4f}): scale all tensors by one factor")


# --------------------------------------------------------------------------------------------
# rnn_step_jacobian: a derivation checked numerically -- dh_t/dh_{t-1} of one step, by hand
# --------------------------------------------------------------------------------------------

JACOBIAN_PARAMS = RNN_PARAMS
JACOBIAN_RULES = {"autograd": "the exercise is to derive the Jacobian on paper and compute it from the formula, "
                              "without autograd (torch.autograd, torch.func.jacrev/jacfwd)"}


def _step_pre_activation(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    b_ih, b_hh = _biases(bias_ih, bias_hh)
    # $$a_t = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}$$
    return x @ weight_ih.T + b_ih + h @ weight_hh.T + b_hh  # (B, H)


def _jacobian_from(deriv, weight_hh):
    # $$J_b = \operatorname{diag}(\phi'(a_b))\, W_{hh}$$: row i of W_hh scaled by phi'(a_i)
    return deriv.unsqueeze(-1) * weight_hh  # (B, H, H)


def step_jacobian_reference(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """dh_t/dh_{t-1} of one RNN step for every batch element, by autograd in float64: (B, H, H)."""
    leaf = h.detach().to(torch.float64).clone().requires_grad_(True)
    args = [t if t is None else t.detach().to(torch.float64) for t in (x, weight_ih, weight_hh, bias_ih, bias_hh)]
    with torch.enable_grad():
        h_new = ref.rnn_cell(args[0], leaf, args[1], args[2], args[3], args[4], nonlinearity)
        # Batch elements do not interact: the gradient of the sum over the batch of unit i is row i of each J_b.
        rows = [torch.autograd.grad(h_new[:, i].sum(), leaf, retain_graph=True)[0] for i in range(h_new.shape[1])]
    return torch.stack(rows, dim=1)  # (B, H, H): [b, i, j] = dh_new[b, i] / dh[b, j]


@mistake("rnn_step_jacobian", "φ′ is taken at the old state, diag(1 − h_{t-1}²) W_hh, instead of at the step's own "
         "output, diag(1 − h_t²) W_hh")
def _jac_deriv_at_old_state(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    deriv = 1 - h**2 if nonlinearity == "tanh" else (h > 0).to(h.dtype)
    return _jacobian_from(deriv, weight_hh)


@mistake("rnn_step_jacobian", "the Jacobian is transposed: W_hhᵀ diag(φ′) (the factor of the backward recursion) "
         "instead of diag(φ′) W_hh")
def _jac_transposed(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    a = _step_pre_activation(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    deriv = 1 - torch.tanh(a) ** 2 if nonlinearity == "tanh" else (a > 0).to(a.dtype)
    return _jacobian_from(deriv, weight_hh).transpose(-2, -1)


@mistake("rnn_step_jacobian", "φ′ is missing: the Jacobian is W_hh alone, as for a linear RNN")
def _jac_no_deriv(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    return weight_hh.expand(x.shape[0], -1, -1).clone()


@mistake("rnn_step_jacobian", "φ′ scales the columns, W_hh diag(φ′), instead of the rows, diag(φ′) W_hh")
def _jac_columns(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    a = _step_pre_activation(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    deriv = 1 - torch.tanh(a) ** 2 if nonlinearity == "tanh" else (a > 0).to(a.dtype)
    return weight_hh * deriv.unsqueeze(-2)


@mistake("rnn_step_jacobian", "tanh′ is computed as 1 − a² from the pre-activation a instead of 1 − tanh(a)²")
def _jac_deriv_of_pre_activation(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    a = _step_pre_activation(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    deriv = 1 - a**2 if nonlinearity == "tanh" else (a > 0).to(a.dtype)
    return _jacobian_from(deriv, weight_hh)


@mistake("rnn_step_jacobian", "nonlinearity='relu' is ignored: φ′ is always tanh′ = 1 − h_t²")
def _jac_always_tanh(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    a = _step_pre_activation(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    return _jacobian_from(1 - torch.tanh(a) ** 2, weight_hh)


@exercise("rnn_step_jacobian", module="01", title="The Jacobian of one RNN step, derived by hand", points=2,
          difficulty="medium", minutes=20,
          signature="rnn_step_jacobian(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity='tanh') "
                    "-> J (B, H, H) with J[b, i, j] = d h_new[b, i] / d h[b, j]")
def grade_rnn_step_jacobian(g: Grader, fn) -> None:
    g.check_signature(fn, JACOBIAN_PARAMS)
    records = []
    # Non-square weight_ih (I != H) and large pre-activations (scale 1.5) keep every catalogued mistake apart.
    cases = [(3, 4, 5, torch.float64, "tanh", True), (2, 3, 6, torch.float32, "tanh", True),
             (3, 2, 4, torch.float64, "relu", True), (2, 4, 3, torch.float64, "tanh", False)]
    for B, I, H, dtype, nl, bias in cases:
        args = _rnn_inputs(g, B, I, H, None, dtype)
        args["h"] = args["h"] * 3.0  # |h| up to ~1.5: 1 - h^2 differs clearly from 1 - h_new^2 and from 1 - a^2
        if not bias:
            args["bias_ih"] = args["bias_hh"] = None
        case = f"B={B}, I={I}, H={H}, {dtype_name(dtype)}, nonlinearity={nl!r}" + ("" if bias else ", no biases")
        out, record = g.call_recording(fn, case, args["x"], args["h"], args["weight_ih"], args["weight_hh"],
                                       args["bias_ih"], args["bias_hh"], nl)
        records.append(record)
        args["nonlinearity"] = nl
        g.check_tensor(out, step_jacobian_reference(**as_float64(args)), "J", case, dtype=dtype, args=args)
    g.forbid(records, JACOBIAN_RULES, "every case")
