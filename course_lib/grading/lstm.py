"""Module 02 graders: the LSTM cell and sequence, the constant error carousel, and the forget-gate bias."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.grading.core import (
    MISTAKES,
    Grader,
    _value_error,
    as_float64,
    check_gradients,
    dtype_name,
    exercise,
    mistake,
)
from course_lib.lstm import reference as ref

CELL_PARAMS = ["x", "state", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]

# The statement of module 02 says: do not call torch.nn.LSTM, nn.LSTMCell or torch.lstm_cell (they run
# torch.lstm / torch.lstm_cell inside).
LSTM_BUILTINS = {"lstm": "the exercise is to write the LSTM yourself; torch.nn.LSTM, nn.LSTMCell and "
                         "torch.lstm_cell do it for you"}


# --------------------------------------------------------------------------------------------
# The catalogues of lstm_cell and lstm: one cell with switches, each mistake one switch away
# --------------------------------------------------------------------------------------------


def _cell_variant(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, order="ifgo", g_act="tanh",
                  h_from="tanh_c_new", old_cell="forget", input_gate=True, biases="both", swap_out=False):
    H = weight_hh.shape[1]
    h, c = state if state is not None else (x.new_zeros(x.shape[0], H), x.new_zeros(x.shape[0], H))
    a = x @ weight_ih.T + h @ weight_hh.T
    if bias_ih is not None and biases in ("both", "ih"):
        a = a + bias_ih
    if bias_hh is not None and biases in ("both", "hh"):
        a = a + bias_hh
    pre = dict(zip(order, a.chunk(4, dim=-1), strict=True))
    i, f, o = torch.sigmoid(pre["i"]), torch.sigmoid(pre["f"]), torch.sigmoid(pre["o"])
    g = torch.tanh(pre["g"]) if g_act == "tanh" else torch.sigmoid(pre["g"])
    kept = {"forget": f * c, "none": torch.zeros_like(c), "ungated": c}[old_cell]
    c_new = kept + (i * g if input_gate else g)
    h_new = o * {"tanh_c_new": torch.tanh(c_new), "tanh_c_old": torch.tanh(c), "c_new": c_new}[h_from]
    return (c_new, h_new) if swap_out else (h_new, c_new)


_CELL_MISTAKES = [
    ("the input and forget gates are swapped: rows 0:H are used as f and rows H:2H as i (the order is i, f, g, o)",
     dict(order="figo")),
    ("the cell candidate g and the output gate o are swapped: the gates are read in the order i, f, o, g instead "
     "of i, f, g, o", dict(order="ifog")),
    ("the cell candidate g goes through a sigmoid instead of tanh", dict(g_act="sigmoid")),
    ("h_t = o_t ⊙ c_t: the tanh of the cell is missing", dict(h_from="c_new")),
    ("h_t = o_t ⊙ tanh(c_{t-1}): the tanh is taken of the old cell instead of the new one",
     dict(h_from="tanh_c_old")),
    ("the forget gate is ignored and the old cell dropped: c_t = i_t ⊙ g_t", dict(old_cell="none")),
    ("the old cell is kept without the forget gate: c_t = c_{t-1} + i_t ⊙ g_t", dict(old_cell="ungated")),
    ("the input gate is ignored: c_t = f_t ⊙ c_{t-1} + g_t", dict(input_gate=False)),
    ("bias_hh is left out (only bias_ih is added)", dict(biases="ih")),
    ("bias_ih is left out (only bias_hh is added)", dict(biases="hh")),
]


def _register_cell_mistakes() -> None:
    for description, switches in _CELL_MISTAKES + [("the pair is returned as (c, h) instead of (h, c)",
                                                    dict(swap_out=True))]:
        def wrong(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None, _s=switches):
            return _cell_variant(x, state, weight_ih, weight_hh, bias_ih, bias_hh, **_s)

        wrong.__name__ = wrong.__qualname__ = "lstm_cell_" + "_".join(f"{k}_{v}" for k, v in switches.items())
        mistake("lstm_cell", description)(wrong)


def _seq_variant(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, cell=None, carry="both",
                 out_is_c=False, swap_state=False, ignore_state=False):
    B, S, _ = x.shape
    H = weight_hh.shape[1]
    start = (x.new_zeros(B, H), x.new_zeros(B, H)) if state is None or ignore_state else state
    h, c = start
    outs = []
    for t in range(S):
        prev = {"both": (h, c), "none": start, "h_only": (h, start[1])}[carry]
        h, c = _cell_variant(x[:, t], prev, weight_ih, weight_hh, bias_ih, bias_hh, **(cell or {}))
        outs.append(c if out_is_c else h)
    return torch.stack(outs, dim=1), ((c, h) if swap_state else (h, c))


_SEQ_MISTAKES = [
    ("the state is not carried: every step starts again from the initial state", dict(carry="none")),
    ("only h is carried from step to step: c restarts from c0 at every step", dict(carry="h_only")),
    ("out collects the cell states c_t instead of the hidden states h_t", dict(out_is_c=True)),
    ("the final state is returned as (c_n, h_n) instead of (h_n, c_n)", dict(swap_state=True)),
    ("the given state is ignored: the loop starts from zeros", dict(ignore_state=True)),
] + [("inside the cell, " + description, dict(cell=switches)) for description, switches in _CELL_MISTAKES]


def _register_seq_mistakes() -> None:
    for description, switches in _SEQ_MISTAKES:
        def wrong(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None, _s=switches):
            return _seq_variant(x, state, weight_ih, weight_hh, bias_ih, bias_hh, **_s)

        name = "_".join(f"{k}_{v}" for k, v in switches.get("cell", switches).items())
        wrong.__name__ = wrong.__qualname__ = "lstm_" + name.replace("'", "").replace(" ", "")
        mistake("lstm", description)(wrong)


_register_cell_mistakes()
_register_seq_mistakes()


def _cell_notes(result, state) -> list[str]:
    """Bounds every LSTM step obeys, checked on the learner's (h, c): they point at a missing tanh or gate."""
    h, c = (t.detach().double() for t in result)
    c_old = torch.zeros_like(c) if state is None else state[1].detach().double()
    notes = []
    if bool((h.abs() >= 1).any()):
        notes.append("some |h| are >= 1, but h = o ⊙ tanh(c) always lies in (-1, 1)")
    if bool((c.abs() > c_old.abs() + 1 + 1e-6).any()):
        notes.append("some |c_t| exceed |c_{t-1}| + 1, impossible for c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t with f, i in "
                     "(0, 1) and g in (-1, 1)")
    return notes


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
    records = []
    cases = [(3, 4, 5, torch.float64, "state"), (2, 3, 6, torch.float32, "state"),
             (3, 4, 5, torch.float64, "no biases"), (2, 5, 3, torch.float64, "state=None")]
    for B, I, H, dtype, variant in cases:
        a = _lstm_inputs(g, B, I, H, None, dtype)
        if variant == "no biases":
            a["bias_ih"] = a["bias_hh"] = None
        state = None if variant == "state=None" else (a["h"], a["c"])
        case = f"B={B}, I={I}, H={H}, {dtype_name(dtype)}" + ("" if variant == "state" else f", {variant}")
        result, record = g.call_recording(fn, case, a["x"], state, a["weight_ih"], a["weight_hh"], a["bias_ih"],
                                          a["bias_hh"], operators=False)
        records.append(record)
        args = dict(x=a["x"], state=state, weight_ih=a["weight_ih"], weight_hh=a["weight_hh"], bias_ih=a["bias_ih"],
                    bias_hh=a["bias_hh"])
        g.check_outputs(result, ref.lstm_cell(**as_float64(args)), ("h", "c"), case, dtype=dtype, args=args,
                        notes=lambda result=result, args=args: _cell_notes(result, args["state"]))
    a = _lstm_inputs(g, 3, 4, 5, None)
    check_gradients(g, _with_state(fn), _with_state(ref.lstm_cell), "B=3, I=4, H=5, float64", a, wrt=list(a))
    g.forbid(records, LSTM_BUILTINS, "every case")


@exercise("lstm", module="02", title="An LSTM over a whole sequence", points=2, difficulty="easy", minutes=10,
          signature="lstm(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> (out (B, S, H), "
                    "(h_n, c_n)), x (B, S, I), state = (h0, c0) each (B, H) or None for zeros")
def grade_lstm(g: Grader, fn) -> None:
    g.check_signature(fn, CELL_PARAMS)
    records = []
    cases = [(2, 7, 3, 4, torch.float64, "state"), (3, 5, 2, 6, torch.float32, "state"),
             (2, 6, 4, 3, torch.float64, "state=None"), (2, 5, 3, 4, torch.float64, "no biases"),
             (1, 1, 3, 4, torch.float64, "state")]
    for B, S, I, H, dtype, variant in cases:
        a = _lstm_inputs(g, B, I, H, S, dtype)
        if variant == "no biases":
            a["bias_ih"] = a["bias_hh"] = None
        state = None if variant == "state=None" else (a["h"], a["c"])
        case = f"B={B}, S={S}, I={I}, H={H}, {dtype_name(dtype)}" + ("" if variant == "state" else f", {variant}")
        result, record = g.call_recording(fn, case, a["x"], state, a["weight_ih"], a["weight_hh"], a["bias_ih"],
                                          a["bias_hh"], operators=False)
        records.append(record)
        args = dict(x=a["x"], state=state, weight_ih=a["weight_ih"], weight_hh=a["weight_hh"], bias_ih=a["bias_ih"],
                    bias_hh=a["bias_hh"])
        g.check_outputs(result, ref.lstm(**as_float64(args)), ("out", ("h_n", "c_n")), case, dtype=dtype, args=args)
    a = _lstm_inputs(g, 2, 3, 4, 6)
    check_gradients(g, _with_state(fn), _with_state(ref.lstm), "B=2, S=6, I=3, H=4, float64", a, wrt=list(a))
    g.forbid(records, LSTM_BUILTINS, "every case")


# --------------------------------------------------------------------------------------------
# cec_gradient
# --------------------------------------------------------------------------------------------


@mistake("cec_gradient", "the pre-activations are multiplied without the sigmoid: ∏ f̃_t instead of ∏ σ(f̃_t)")
def _cec_no_sigmoid(f_pre):
    return f_pre.prod(dim=1)


@mistake("cec_gradient", "the gates are summed over the steps instead of multiplied")
def _cec_sum(f_pre):
    return torch.sigmoid(f_pre).sum(dim=1)


@mistake("cec_gradient", "the gates are averaged over the steps instead of multiplied")
def _cec_mean(f_pre):
    return torch.sigmoid(f_pre).mean(dim=1)


@mistake("cec_gradient", "1 − σ(f̃_t) is multiplied (the fraction forgotten) instead of σ(f̃_t) (the fraction kept)")
def _cec_one_minus(f_pre):
    return (1 - torch.sigmoid(f_pre)).prod(dim=1)


@mistake("cec_gradient", "the sigmoid is taken of the summed pre-activations: σ(Σ f̃_t) instead of ∏ σ(f̃_t)")
def _cec_sigmoid_of_sum(f_pre):
    return torch.sigmoid(f_pre.sum(dim=1))


@mistake("cec_gradient", "the product leaves out the first step (f_pre[:, 1:])")
def _cec_first_dropped(f_pre):
    return torch.sigmoid(f_pre[:, 1:]).prod(dim=1)


@mistake("cec_gradient", "the product leaves out the last step (f_pre[:, :-1])")
def _cec_last_dropped(f_pre):
    return torch.sigmoid(f_pre[:, :-1]).prod(dim=1)


@mistake("cec_gradient", "the sum of log σ(f̃_t) is returned without the final exp (the log of the answer)")
def _cec_log(f_pre):
    return F.logsigmoid(f_pre).sum(dim=1)


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
        g.check_tensor(out, ref.cec_gradient(f_pre.double()), "dc_S/dc_0", case, dtype=dtype, args=dict(f_pre=f_pre))
    f_pre = g.randn(2, 6, 3)
    check_gradients(g, fn, ref.cec_gradient, "f_pre: (2, 6, 3) float64", {"f_pre": f_pre}, wrt=["f_pre"])


# --------------------------------------------------------------------------------------------
# forget_half_life
# --------------------------------------------------------------------------------------------


@mistake("forget_half_life", "log(sigmoid(b)) is computed in float32: σ(b) rounds to 1.0 for b ≳ 17, log(1.0) = 0 "
         "and the half-life becomes infinite; F.logsigmoid(b) computes log σ(b) without that rounding",
         native_dtype=True)
def _half_life_rounded_sigmoid(forget_bias):
    return math.log(0.5) / torch.log(torch.sigmoid(forget_bias))


@mistake("forget_half_life", "the mean lifetime 1/(1 − σ(b)) is computed instead of the half-life")
def _half_life_mean_lifetime(forget_bias):
    return 1 / (1 - torch.sigmoid(forget_bias))


@mistake("forget_half_life", "the e-folding time −1/log σ(b) is computed: the log(1/2) in the numerator is missing")
def _half_life_e_folding(forget_bias):
    return -1 / F.logsigmoid(forget_bias)


@mistake("forget_half_life", "the logarithm is taken of the bias b instead of the gate σ(b)")
def _half_life_log_of_bias(forget_bias):
    return math.log(0.5) / torch.log(forget_bias)


@mistake("forget_half_life", "the ratio is upside down: log σ(b) / log(1/2) instead of log(1/2) / log σ(b)")
def _half_life_inverted(forget_bias):
    return F.logsigmoid(forget_bias) / math.log(0.5)


@mistake("forget_half_life", "σ(b)^(1/2) is computed instead of solving σ(b)^n = 1/2 for n")
def _half_life_sqrt(forget_bias):
    return torch.sigmoid(forget_bias) ** 0.5


@exercise("forget_half_life", module="02", title="How long a forget gate remembers", points=1,
          difficulty="warm-up", minutes=5,
          signature="forget_half_life(forget_bias) -> tensor of the same shape: steps n with "
                    "sigmoid(forget_bias)**n == 1/2")
def grade_forget_half_life(g: Grader, fn) -> None:
    g.check_signature(fn, ["forget_bias"])
    cases = [(torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64), "forget_bias = [0, 1, 3], float64"),
             (g.randn(4, 5, scale=2.0).to(torch.float32), "forget_bias: (4, 5) float32"),
             (torch.tensor([-4.0, 6.0, 10.0], dtype=torch.float64), "forget_bias = [-4, 6, 10], float64"),
             # The statement's warning: in float32 σ(b) is 1.0 for b >= 17, so log(sigmoid(b)) is 0 there.
             (torch.tensor([-2.0, 5.0, 17.0, 20.0, 30.0], dtype=torch.float32),
              "forget_bias = [-2, 5, 17, 20, 30], float32 (σ(b) rounds to 1.0 from b = 17 on)")]
    for b, case in cases:
        out = g.call(fn, case, b)
        g.check_tensor(out, ref.forget_half_life(b.double()), "half-life", case, dtype=b.dtype,
                       args=dict(forget_bias=b))
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


# --------------------------------------------------------------------------------------------
# init_forget_bias: the mistakes change a module in place, as the learner's code does; the grader
# applies each to a copy of the module as it was and compares every parameter with the learner's.
# --------------------------------------------------------------------------------------------


def _set_bias_rows(lstm_module, value, *, rows=(1, 2), hh="zero", layers="all", whole=False):
    H = lstm_module.hidden_size
    lo, hi = rows[0] * H, rows[1] * H
    with torch.no_grad():
        for name, p in lstm_module.named_parameters():
            if not name.startswith("bias") or (layers == "first" and "_l0" not in name) or (
                    layers == "forward" and name.endswith("_reverse")):
                continue
            is_ih = name.startswith("bias_ih")
            target = p if whole else p[lo:hi]
            if is_ih:
                target.fill_(value)
            elif hh == "zero":
                target.zero_()
            elif hh == "value":
                target.fill_(value)
    return lstm_module


_INIT_MISTAKES = [
    ("the input-gate rows 0:H are set instead of the forget-gate rows H:2H (rows are stacked i, f, g, o)",
     dict(rows=(0, 1))),
    ("the candidate rows 2H:3H are set instead of the forget-gate rows H:2H (rows are stacked i, f, g, o)",
     dict(rows=(2, 3))),
    ("the output-gate rows 3H:4H are set instead of the forget-gate rows H:2H (rows are stacked i, f, g, o)",
     dict(rows=(3, 4))),
    ("value goes into bias_ih but bias_hh keeps its forget rows: the gate sees value + bias_hh", dict(hh="keep")),
    ("value goes into both bias_ih and bias_hh: the gate sees 2 × value", dict(hh="value")),
    ("only layer 0 is changed: the biases of the other layers keep their values", dict(layers="first")),
    ("the reverse direction (the *_reverse biases) is left unchanged", dict(layers="forward")),
    ("the whole bias vectors are overwritten, not only the forget rows H:2H", dict(whole=True)),
]
for _description, _switches in _INIT_MISTAKES:
    def _wrong_init(lstm_module, value, _s=_switches):
        return _set_bias_rows(lstm_module, value, **_s)

    _wrong_init.__name__ = _wrong_init.__qualname__ = "init_forget_bias_" + "_".join(
        f"{k}_{v}" for k, v in _switches.items()).replace("(", "").replace(")", "").replace(", ", "_")
    mistake("init_forget_bias", _description)(_wrong_init)


def _init_diagnosis(module: nn.LSTM, before: dict, value: float) -> str | None:
    """The first catalogued mistake that, applied to the module as it was, gives the learner's parameters."""
    for m in MISTAKES.get("init_forget_bias", []):
        fresh = copy.deepcopy(module)
        with torch.no_grad():
            for name, p in fresh.named_parameters():
                p.copy_(before[name][1])
        try:
            m.fn(fresh, value)
        except Exception:  # noqa: BLE001 - a catalogue entry that does not apply here
            continue
        mine = dict(module.named_parameters())
        if all(torch.allclose(p.detach(), mine[n].detach(), rtol=1e-6, atol=1e-6)
               for n, p in fresh.named_parameters()):
            return m.description
    return None


def _init_feedback(module: nn.LSTM, before: dict, value: float) -> str:
    diagnosis = _init_diagnosis(module, before, value)
    if diagnosis:
        return f"diagnosis: your output matches what you get when {diagnosis}"
    return (f"(none of the {len(MISTAKES.get('init_forget_bias', []))} common mistakes the grader knows for this "
            "exercise gives these parameters)")


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
        errors = []
        for s in suffixes:
            forget = params[f"bias_ih_{s}"][H:2 * H] + params[f"bias_hh_{s}"][H:2 * H]
            errors.append((s, _value_error(forget.detach(), torch.full((H,), value, dtype=torch.float64), None)))
        label = "bias_ih + bias_hh on the forget rows H:2H of " + ", ".join(suffixes)
        if any(err for _, err in errors):
            lines = ["status: " + ", ".join(f"{s} {'✗' if err else '✓'}" for s, err in errors)]
            lines += [f"bias_ih_{s} + bias_hh_{s} on the forget rows differs from value: {err}"
                      for s, err in errors if err]
            lines.append(_init_feedback(module, before, value))
            g.fail("values", f"{label} ({case})", "\n".join(lines))
        g.ok("values", f"{label} ({case})")
        changed = []
        for n, (p, old) in before.items():
            keep = torch.ones_like(old, dtype=torch.bool)
            if n.startswith("bias_"):
                keep[H:2 * H] = False
            if not torch.equal(p.detach()[keep], old[keep]):
                changed.append(n)
        if changed:
            g.fail("properties", f"leaves every other entry unchanged ({case})",
                   f"entries outside the forget-gate rows changed in: {', '.join(changed)} "
                   "(rows are stacked i, f, g, o: the forget gate is rows H:2H of each bias)\n"
                   + _init_feedback(module, before, value))
        g.ok("properties", f"leaves every other entry unchanged ({case})")
        g.expect(all(p.requires_grad for p in params.values()), "properties", f"parameters still trainable ({case})",
                 "some parameters no longer require gradients")


# --------------------------------------------------------------------------------------------
# gru_cell: the GRU as the lighter variant (torch.nn.GRUCell semantics)
# --------------------------------------------------------------------------------------------

from course_lib.grading.core import mistake  # noqa: E402  (this section is appended to the module)

GRU_PARAMS = ["x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def _gru_parts(x, h, weight_ih, weight_hh, bias_ih, bias_hh, order=(0, 1, 2)):
    """Input and recurrent pre-activations split into (r, z, n) blocks; ``order`` permutes the blocks."""
    H = weight_hh.shape[1]
    h = x.new_zeros(x.shape[0], H) if h is None else h
    a_x = x @ weight_ih.T
    w_h = h @ weight_hh.T
    b_h = torch.zeros_like(w_h) if bias_hh is None else bias_hh.expand_as(w_h)
    if bias_ih is not None:
        a_x = a_x + bias_ih
    xs, whs, bhs = (t.chunk(3, dim=-1) for t in (a_x, w_h, b_h))
    pick = [order.index(k) for k in range(3)]  # block that the mistaken code reads as r, z, n
    return h, [xs[p] for p in pick], [whs[p] for p in pick], [bhs[p] for p in pick]


@mistake("gru_cell", "b_hn is added outside the reset gate: n = tanh(W_in x + b_in + r ⊙ (W_hn h) + b_hn)")
def _gru_bias_outside_reset(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    h, (x_r, x_z, x_n), (w_r, w_z, w_n), (b_r, b_z, b_n) = _gru_parts(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    r, z = torch.sigmoid(x_r + w_r + b_r), torch.sigmoid(x_z + w_z + b_z)
    n = torch.tanh(x_n + r * w_n + b_n)
    return (1 - z) * n + z * h


@mistake("gru_cell", "the reset gate multiplies h before the matrix product: W_hn (r ⊙ h) + b_hn (the form of Cho et "
                     "al. 2014, not torch's)")
def _gru_reset_before_matmul(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    h, (x_r, x_z, x_n), (w_r, w_z, _), (b_r, b_z, b_n) = _gru_parts(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    r, z = torch.sigmoid(x_r + w_r + b_r), torch.sigmoid(x_z + w_z + b_z)
    H = weight_hh.shape[1]
    n = torch.tanh(x_n + (r * h) @ weight_hh[2 * H:].T + b_n)
    return (1 - z) * n + z * h


@mistake("gru_cell", "z and 1 − z are swapped: h_new = z ⊙ n + (1 − z) ⊙ h (in torch, z near 1 keeps the old h)")
def _gru_update_swapped(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    h, (x_r, x_z, x_n), (w_r, w_z, w_n), (b_r, b_z, b_n) = _gru_parts(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    r, z = torch.sigmoid(x_r + w_r + b_r), torch.sigmoid(x_z + w_z + b_z)
    n = torch.tanh(x_n + r * (w_n + b_n))
    return z * n + (1 - z) * h


@mistake("gru_cell", "the row blocks are read as z, r, n instead of torch's r, z, n")
def _gru_order_zrn(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    h, (x_r, x_z, x_n), (w_r, w_z, w_n), (b_r, b_z, b_n) = _gru_parts(x, h, weight_ih, weight_hh, bias_ih, bias_hh,
                                                                       order=(1, 0, 2))
    r, z = torch.sigmoid(x_r + w_r + b_r), torch.sigmoid(x_z + w_z + b_z)
    n = torch.tanh(x_n + r * (w_n + b_n))
    return (1 - z) * n + z * h


@mistake("gru_cell", "the reset gate is left out of the candidate: n = tanh(W_in x + b_in + W_hn h + b_hn)")
def _gru_no_reset(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    h, (x_r, x_z, x_n), (w_r, w_z, w_n), (b_r, b_z, b_n) = _gru_parts(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    z = torch.sigmoid(x_z + w_z + b_z)
    n = torch.tanh(x_n + w_n + b_n)
    return (1 - z) * n + z * h


@mistake("gru_cell", "the candidate n goes through a sigmoid instead of tanh")
def _gru_sigmoid_candidate(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    h, (x_r, x_z, x_n), (w_r, w_z, w_n), (b_r, b_z, b_n) = _gru_parts(x, h, weight_ih, weight_hh, bias_ih, bias_hh)
    r, z = torch.sigmoid(x_r + w_r + b_r), torch.sigmoid(x_z + w_z + b_z)
    n = torch.sigmoid(x_n + r * (w_n + b_n))
    return (1 - z) * n + z * h


def _gru_inputs(g: Grader, B: int, I: int, H: int, dtype=torch.float64) -> dict:
    """Seeded inputs with a non-zero state and biases on every gate (zeros would hide bugs)."""
    return dict(x=g.randn(B, I, dtype=dtype), h=g.randn(B, H, dtype=dtype, scale=0.8),
                weight_ih=g.randn(3 * H, I, dtype=dtype, scale=I**-0.5),
                weight_hh=g.randn(3 * H, H, dtype=dtype, scale=H**-0.5),
                bias_ih=g.randn(3 * H, dtype=dtype, scale=0.5), bias_hh=g.randn(3 * H, dtype=dtype, scale=0.8))


@exercise("gru_cell", module="02", title="One step of a GRU (torch.nn.GRUCell)", points=2, difficulty="medium",
          minutes=20, signature="gru_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None) -> h_new (B, H), "
                                "x (B, I), h (B, H) or None; weights (3H, ·) stacked r, z, n; the reset gate "
                                "multiplies W_hn h + b_hn")
def grade_gru_cell(g: Grader, fn) -> None:
    g.check_signature(fn, GRU_PARAMS)
    cases = [(3, 4, 5, torch.float64, "state"), (2, 3, 6, torch.float32, "state"),
             (3, 4, 5, torch.float64, "no biases"), (2, 5, 3, torch.float64, "h=None")]
    records = []
    for B, I, H, dtype, variant in cases:
        a = _gru_inputs(g, B, I, H, dtype)
        if variant == "no biases":
            a["bias_ih"] = a["bias_hh"] = None
        if variant == "h=None":
            a["h"] = None
        case = f"B={B}, I={I}, H={H}, {dtype_name(dtype)}" + ("" if variant == "state" else f", {variant}")
        result, record = g.call_recording(fn, case, a["x"], a["h"], a["weight_ih"], a["weight_hh"], a["bias_ih"],
                                          a["bias_hh"])
        records.append(record)
        g.check_outputs(result, ref.gru_cell(**as_float64(a)), "h_new", case, dtype=dtype, args=a)
    g.forbid(records, {"gru_cell": "the exercise is to write the cell, not to call torch's"}, "every case")
    a = _gru_inputs(g, 3, 4, 5)
    check_gradients(g, fn, ref.gru_cell, "B=3, I=4, H=5, float64", a, wrt=list(a))


# --------------------------------------------------------------------------------------------
# predict_forget_memory: predict, then run
# --------------------------------------------------------------------------------------------

PREDICT_ID = "predict_forget_memory"


def _theory(forget_bias, steps):
    from course_lib.lstm.experiments import forget_memory_theory

    return forget_memory_theory(forget_bias, steps)


@mistake(PREDICT_ID, "the half-life is taken as the e-folding time −1/log σ(b): the lag at which 1/e is left, not 1/2")
def _predict_e_folding(forget_bias, steps):
    log_f = torch.nn.functional.logsigmoid(torch.as_tensor(forget_bias, dtype=torch.float64))
    return -1.0 / log_f, torch.exp(steps * log_f)


@mistake(PREDICT_ID, "the decay is treated as linear: a loss of 1 − σ(b) per step, so half-life 0.5 / (1 − σ(b)) "
                     "and 1 − S (1 − σ(b)) kept")
def _predict_linear(forget_bias, steps):
    f = torch.sigmoid(torch.as_tensor(forget_bias, dtype=torch.float64))
    return 0.5 / (1 - f), (1 - steps * (1 - f)).clamp_min(0.0)


@mistake(PREDICT_ID, "the forget gate is σ(−b) (the sign of the bias flipped)")
def _predict_sign_flipped(forget_bias, steps):
    return _theory(-torch.as_tensor(forget_bias, dtype=torch.float64), steps)


@exercise(PREDICT_ID, module="02", title="Predict, then run: how long a forget gate remembers", points=1,
          difficulty="warm-up", minutes=10,
          signature="check('predict_forget_memory', predict_then_run(my_prediction)): my_prediction = "
                    "{'half_life': steps, 'kept_after': fraction}, written down before the experiment runs")
def grade_predict_forget_memory(g: Grader, record) -> None:
    from course_lib.lstm.experiments import PredictionRecord

    g.expect(isinstance(record, PredictionRecord), "types", "a record from predict_then_run",
             f"expected what predict_then_run(my_prediction) returns, got {type(record).__name__}")
    if not record.attempted:
        g.not_attempted = True
        g.fail("runs", "not attempted yet", "no prediction recorded: set my_prediction to your two numbers and "
               "run predict_then_run(my_prediction) again")
    g.expect(bool(record.measured) and record.recorded_at <= record.measured_at, "rules",
             "the prediction was recorded before the measurement",
             "this record has no measurement made after the prediction: run predict_then_run(my_prediction)")
    case = f"forget bias {record.forget_bias:g}, {record.steps} steps"
    mine = tuple(torch.tensor(record.prediction[k], dtype=torch.float64) for k in ("half_life", "kept_after"))
    args = dict(forget_bias=record.forget_bias, steps=record.steps)
    g.check_outputs(mine, _theory(**args), ("half_life", "kept_after"), case, dtype=torch.float64,
                    tol=dict(atol=0.0, rtol=0.1), args=args)


# --------------------------------------------------------------------------------------------
# lstm_bptt (optional, hard): backpropagation through the LSTM by hand
# --------------------------------------------------------------------------------------------

LSTM_BPTT_PARAMS = ["x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "grad_out"]
LSTM_BPTT_KEYS = ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _lstm_bptt_variant(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, carousel=True, output_path=True,
                       gate_paths=True, tanh_prime_of_c=False, sigmoid_prime_for_g=False):
    """The manual backward pass of the reference with one part switched off or miswritten (for the catalogue)."""
    B, S, _ = x.shape
    H = weight_hh.shape[1]
    h, c, cache = h0, c0, []
    for t in range(S):
        i, f, g, o = ref.lstm_gates(x[:, t], h, weight_ih, weight_hh, bias_ih, bias_hh)
        c_new = f * c + i * g
        cache.append((h, c, i, f, g, o, c_new))
        h, c = o * torch.tanh(c_new), c_new
    dx, dw_ih, dw_hh = torch.zeros_like(x), torch.zeros_like(weight_ih), torch.zeros_like(weight_hh)
    db = torch.zeros(4 * H, dtype=x.dtype)
    dh_next, dc_next = torch.zeros(B, H, dtype=x.dtype), torch.zeros(B, H, dtype=x.dtype)
    for t in reversed(range(S)):
        h_prev, c_prev, i, f, g, o, c_t = cache[t]
        tanh_c = torch.tanh(c_t)
        dh = grad_out[:, t] + dh_next
        d_tanh = 1 - c_t**2 if tanh_prime_of_c else 1 - tanh_c**2
        dc = (dh * o * d_tanh if output_path else 0) + (dc_next if carousel else 0)
        g_prime = g * (1 - g) if sigmoid_prime_for_g else 1 - g**2
        eps = torch.cat([dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * g_prime,
                         dh * tanh_c * o * (1 - o)], dim=-1)
        dx[:, t] = eps @ weight_ih
        dw_ih += eps.T @ x[:, t]
        dw_hh += eps.T @ h_prev
        db += eps.sum(0)
        dh_next = eps @ weight_hh if gate_paths else torch.zeros_like(dh_next)
        dc_next = dc * f
    return dict(x=dx, h0=dh_next, c0=dc_next, weight_ih=dw_ih, weight_hh=dw_hh, bias_ih=db, bias_hh=db.clone())


def _register_lstm_bptt_mistakes() -> None:
    catalogue = [
        (dict(carousel=False), "δc_t leaves out the carousel term f_{t+1} ⊙ δc_{t+1}: the gradient reaches each "
                               "cell only through its own output h_t"),
        (dict(output_path=False), "δc_t leaves out the output path δh_t ⊙ o_t ⊙ (1 − tanh² c_t): only the carousel "
                                  "term is kept"),
        (dict(gate_paths=False), "the gradient into h_{t−1} through the gates (W_hhᵀ ε_t) is dropped: BPTT truncated "
                                 "to the cell path, as in the 1997 LSTM"),
        (dict(tanh_prime_of_c=True), "the derivative of tanh(c_t) is written 1 − c_t² instead of 1 − tanh²(c_t)"),
        (dict(sigmoid_prime_for_g=True), "the candidate's ε uses the sigmoid derivative g(1 − g) instead of tanh's "
                                         "1 − g²"),
    ]
    for switches, description in catalogue:
        def wrong(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, _switches=switches):
            return _lstm_bptt_variant(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, **_switches)
        wrong.__name__ = wrong.__qualname__ = "lstm_bptt_" + "_".join(f"{k}_{v}" for k, v in switches.items())
        mistake("lstm_bptt", description)(wrong)


_register_lstm_bptt_mistakes()


def _autograd_lstm_bptt(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out):
    leaves = {k: t.detach().clone().requires_grad_(True)
              for k, t in dict(x=x, h0=h0, c0=c0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih,
                               bias_hh=bias_hh).items()}
    with torch.enable_grad():
        out, _ = ref.lstm(leaves["x"], (leaves["h0"], leaves["c0"]), leaves["weight_ih"], leaves["weight_hh"],
                          leaves["bias_ih"], leaves["bias_hh"])
        grads = torch.autograd.grad((out * grad_out).sum(), list(leaves.values()))
    return dict(zip(leaves, grads, strict=True))


@exercise("lstm_bptt", module="02", title="Backpropagation through an LSTM by hand (optional)", points=3,
          difficulty="hard", minutes=45,
          signature="lstm_bptt(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out) -> dict of the "
                    "gradients of (out * grad_out).sum() with keys x, h0, c0, weight_ih, weight_hh, bias_ih, "
                    "bias_hh; runs under inference_mode, no autograd")
def grade_lstm_bptt(g: Grader, fn) -> None:
    g.check_signature(fn, LSTM_BPTT_PARAMS)
    records = []
    for B, S, I, H, dtype in [(2, 6, 3, 4, torch.float64), (3, 1, 2, 3, torch.float64), (2, 8, 3, 5, torch.float32)]:
        a = _lstm_inputs(g, B, I, H, S, dtype)
        args = dict(x=a["x"], h0=a["h"], c0=a["c"], weight_ih=a["weight_ih"], weight_hh=a["weight_hh"],
                    bias_ih=a["bias_ih"], bias_hh=a["bias_hh"], grad_out=g.randn(B, S, H, dtype=dtype))
        case = f"B={B}, S={S}, I={I}, H={H}, {dtype_name(dtype)}, lstm_bptt runs under inference_mode"
        result, record = g.call_recording(fn, case, *args.values(), inference=True, operators=False)
        records.append(record)
        g.expect(isinstance(result, dict), "types", f"returns a dict ({case})",
                 f"expected a dict of gradients, got {type(result).__name__}")
        missing = [k for k in LSTM_BPTT_KEYS if k not in result]
        g.expect(not missing, "types", f"has every gradient ({case})", f"missing keys: {', '.join(missing)}")
        want = _autograd_lstm_bptt(**as_float64(args))
        g.check_outputs({k: result[k] for k in LSTM_BPTT_KEYS}, want, {k: f"grad[{k!r}]" for k in LSTM_BPTT_KEYS},
                        case, dtype=dtype, args=args, select=lambda grads: {k: grads[k] for k in LSTM_BPTT_KEYS})
    g.forbid(records, {"autograd": "the exercise is to backpropagate by hand, without autograd "
                                   "(torch.autograd.grad, .backward())", **LSTM_BUILTINS}, "every case")
