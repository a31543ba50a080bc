"""Module 04 graders: modern Hopfield retrieval and energy, Hebbian storage, the classical update, and
the update with projections written as attention.

Each exercise keeps its catalogue of common mistakes beside its grader: one variant function with
switches, each mistake one switch away from the reference (registered with ``mistake``).
"""

from __future__ import annotations

import math

import torch

from course_lib.grading.core import Grader, as_float64, check_gradients, dtype_name, exercise, mistake
from course_lib.hopfield import reference as ref

RETRIEVE_PARAMS = ["xi", "X", "beta", "n_steps", "return_weights"]
ENERGY_PARAMS = ["xi", "X", "beta"]
ATTENTION_PARAMS = ["R", "Y", "W_Q", "W_K", "W_V"]


def _signs(g: Grader, *shape: int, dtype=torch.float64) -> torch.Tensor:
    return (g.randint(0, 2, shape) * 2 - 1).to(dtype)


# --------------------------------------------------------------------------------------------
# hopfield_retrieve
# --------------------------------------------------------------------------------------------


def _retrieve_variant(xi, X, beta, n_steps=1, return_weights=False, *, axis=-1, beta_where="inside",
                      steps_offset=0, carry_state=True, weights_from="last"):
    first_weights = None
    state = xi
    for step in range(n_steps + steps_offset):
        scores = (xi if not carry_state else state) @ X.transpose(-2, -1)
        if beta_where == "inside":
            p = torch.softmax(beta * scores, dim=axis)
            new = p @ X
        elif beta_where == "outside":
            p = torch.softmax(scores, dim=axis)
            new = beta * (p @ X)
        else:  # "sqrt_d": attention's 1/sqrt(d) instead of beta
            p = torch.softmax(scores / math.sqrt(X.shape[-1]), dim=axis)
            new = p @ X
        if step == 0:
            first_weights = p
        state, weights = new, p
    if n_steps + steps_offset == 0:
        weights = torch.softmax(beta * xi @ X.transpose(-2, -1), dim=-1)
    if weights_from == "first":
        weights = first_weights
    return (state, weights) if return_weights else state


_RETRIEVE_MISTAKES = [
    ("the softmax runs over the state patterns (dim=-2) instead of over the stored patterns (dim=-1)",
     dict(axis=-2)),
    ("β multiplies the result of the softmax (β · softmax(ξ Xᵀ) X) instead of the scores inside it",
     dict(beta_where="outside")),
    ("the scores are scaled by attention's 1/√d instead of by β", dict(beta_where="sqrt_d")),
    ("the loop runs n_steps + 1 updates (one too many)", dict(steps_offset=1)),
    ("the loop runs n_steps − 1 updates (one too few)", dict(steps_offset=-1)),
    ("every update starts again from the initial ξ: the state is not carried from one step to the next",
     dict(carry_state=False)),
    ("the weights returned are those of the first update instead of the last", dict(weights_from="first")),
]


def _register(exercise_id, variant, catalogue):
    for description, switches in catalogue:
        def wrong(*args, _switches=switches, **kwargs):
            return variant(*args, **kwargs, **_switches)

        mistake(exercise_id, description)(wrong)


_register("hopfield_retrieve", _retrieve_variant, _RETRIEVE_MISTAKES)


def _retrieve_cases(g: Grader):
    # (xi shape, X shape, beta, n_steps, return_weights, dtype, label)
    specs = [
        ((5, 8), (7, 8), 0.5, 1, False, torch.float64, "no leading dimensions"),
        ((2, 4, 6), (2, 9, 6), 1.2, 1, True, torch.float64, "one leading dimension"),
        ((2, 3, 4, 6), (2, 3, 5, 6), 0.8, 3, True, torch.float64, "(B, NH, S, d), n_steps=3"),
        ((3, 5, 4), (3, 6, 4), 2.0, 2, False, torch.float64, "n_steps=2, weights not asked for"),
        ((2, 4, 8), (2, 10, 8), 0.4, 2, True, torch.float32, "float32, n_steps=2"),
        ((1, 1, 3), (1, 1, 3), 1.0, 4, True, torch.float64, "one stored pattern"),
    ]
    cases = []
    for xs, Xs, beta, n_steps, rw, dtype, label in specs:
        args = dict(xi=g.randn(*xs, dtype=dtype), X=g.randn(*Xs, dtype=dtype), beta=beta, n_steps=n_steps,
                    return_weights=rw)
        case = (f"xi: {xs}, X: {Xs}, {dtype_name(dtype)}, beta={beta}, n_steps={n_steps}, "
                f"return_weights={rw}, {label}")
        cases.append((case, args, dtype))
    return cases


@exercise("hopfield_retrieve", module="04", title="Modern Hopfield retrieval", points=2, difficulty="medium",
          minutes=15,
          signature="hopfield_retrieve(xi, X, beta, n_steps=1, return_weights=False) -> xi_new (..., S, d), or "
                    "(xi_new, weights (..., S, N)) with return_weights=True; n_steps updates "
                    "xi <- softmax(beta xi X^T) X, weights of the last update")
def grade_hopfield_retrieve(g: Grader, fn) -> None:
    g.check_signature(fn, RETRIEVE_PARAMS)
    for case, args, dtype in _retrieve_cases(g):
        result = g.call(fn, case, **args)
        expected = ref.hopfield_retrieve(**as_float64(args))
        names = ("xi_new", "weights") if args["return_weights"] else "xi_new"
        g.check_outputs(result, expected, names, case, dtype=dtype, args=args)

    args = dict(xi=g.randn(2, 4, 5), X=g.randn(2, 6, 5), beta=0.7, n_steps=2, return_weights=True)
    check_gradients(g, fn, ref.hopfield_retrieve, "xi: (2, 4, 5), X: (2, 6, 5), float64, n_steps=2", args,
                    wrt=["xi", "X"])

    # A property that follows from the maths: the energy never increases along the updates.
    X, xi = g.randn(12, 6, scale=2.0), g.randn(40, 6, scale=3.0)
    case = "xi: (40, 6), X: (12, 6), float64, beta=1.5"
    energies = [ref.hopfield_energy(xi, X, 1.5)]
    for n in (1, 2, 3):
        out = g.call(fn, f"{case}, n_steps={n}", xi, X, 1.5, n)
        energies.append(ref.hopfield_energy(out.detach(), X, 1.5))
    rise = max(float((b - a).max()) for a, b in zip(energies, energies[1:], strict=False))
    g.expect(rise <= 1e-10, "properties", "the energy never increases from n_steps to n_steps + 1",
             f"the energy rose by up to {rise:.3g} between consecutive numbers of steps")


# --------------------------------------------------------------------------------------------
# hopfield_energy
# --------------------------------------------------------------------------------------------


def _energy_variant(xi, X, beta, *, half_norm=True, log_n=True, m_term=True, lse_scale=True, m_axis="patterns",
                    stable=True, m_half=True):
    N = X.shape[-2]
    scores = beta * (xi @ X.transpose(-2, -1))
    log_sum = torch.logsumexp(scores, dim=-1) if stable else torch.log(torch.exp(scores).sum(dim=-1))
    lse_value = log_sum / beta if lse_scale else log_sum
    if m_axis == "patterns":
        M = X.norm(dim=-1).amax(dim=-1, keepdim=True)
    elif m_axis == "everything":
        M = X.norm(dim=-1).amax()
    else:  # "coordinates": the norm taken over the patterns, the max over the coordinates
        M = X.norm(dim=-2).amax(dim=-1, keepdim=True)
    E = -lse_value
    if half_norm:
        E = E + 0.5 * (xi * xi).sum(-1)
    if log_n:
        E = E + math.log(N) / beta
    if m_term:
        E = E + (0.5 if m_half else 1.0) * M**2
    return E


_ENERGY_MISTAKES = [
    ("the ½ ξᵀξ term is missing", dict(half_norm=False)),
    ("the β⁻¹ log N term is missing", dict(log_n=False)),
    ("the ½ M² term is missing", dict(m_term=False)),
    ("M² appears without its factor ½", dict(m_half=False)),
    ("lse is taken without the 1/β: log Σ exp(β x·ξ) instead of β⁻¹ log Σ exp(β x·ξ)", dict(lse_scale=False)),
    ("M is the largest norm over all leading indices together, not over the N patterns of the same index",
     dict(m_axis="everything")),
    ("M takes the norms over the wrong axis (over the patterns, dim=-2, instead of over the d coordinates)",
     dict(m_axis="coordinates")),
    ("log Σ exp is computed directly, without subtracting the max (use torch.logsumexp): it overflows for "
     "large β x·ξ", dict(stable=False)),
]

_register("hopfield_energy", _energy_variant, _ENERGY_MISTAKES)


@exercise("hopfield_energy", module="04", title="The modern Hopfield energy", points=2, difficulty="medium",
          minutes=15,
          signature="hopfield_energy(xi, X, beta) -> E (..., S); E = -lse(beta, X xi) + 1/2 xi^T xi + "
                    "beta^-1 log N + 1/2 M^2, lse(beta, z) = beta^-1 log sum exp(beta z), M = max_i ||x_i|| "
                    "over the N patterns of the same leading index")
def grade_hopfield_energy(g: Grader, fn) -> None:
    g.check_signature(fn, ENERGY_PARAMS)
    X2 = g.randn(2, 6, 5)
    X2[1] = X2[1] * 3.0  # the two memories have patterns of different sizes: M is per leading index
    X3 = g.randn(2, 7, 4)
    X3[:, :, 0] = X3[:, :, 0] * 4.0  # one large coordinate: norms over the wrong axis show
    specs = [
        (g.randn(4, 5), g.randn(6, 5), 0.9, torch.float64, "no leading dimensions"),
        (g.randn(2, 3, 5), X2, 0.5, torch.float64, "leading dimension, patterns of different sizes"),
        (g.randn(2, 3, 4), X3, 2.0, torch.float64, "one large coordinate"),
        (g.randn(2, 2, 3, 6), g.randn(2, 2, 5, 6), 1.3, torch.float64, "(B, NH, S, d)"),
        (g.randn(3, 4, dtype=torch.float32), g.randn(5, 4, dtype=torch.float32), 0.7, torch.float32, "float32"),
        (g.randn(3, 8, scale=4.0), g.randn(6, 8, scale=4.0), 60.0, torch.float64,
         "beta=60: beta x.xi far above 700, where exp overflows"),
    ]
    for xi, X, beta, dtype, label in specs:
        args = dict(xi=xi, X=X, beta=beta)
        case = f"xi: {tuple(xi.shape)}, X: {tuple(X.shape)}, {dtype_name(dtype)}, beta={beta}, {label}"
        result = g.call(fn, case, **args)
        g.check_tensor(result, ref.hopfield_energy(**as_float64(args)), "E", case, dtype=dtype, args=args)
    args = dict(xi=g.randn(2, 3, 4), X=g.randn(2, 5, 4), beta=0.8)
    check_gradients(g, fn, ref.hopfield_energy, "xi: (2, 3, 4), X: (2, 5, 4), float64", args, wrt=["xi", "X"])


# --------------------------------------------------------------------------------------------
# hebbian_weights
# --------------------------------------------------------------------------------------------


def _hebbian_variant(X, *, diagonal="zero", scale="none"):
    W = X.transpose(-2, -1) @ X
    if scale == "N":
        W = W / X.shape[-2]
    elif scale == "d":
        W = W / X.shape[-1]
    eye = torch.eye(W.shape[-1], dtype=torch.bool)
    if diagonal == "zero":
        W = W.masked_fill(eye, 0.0)
    elif diagonal == "one":
        W = W.masked_fill(eye, 1.0)
    return W


_HEBBIAN_MISTAKES = [
    ("the diagonal is not set to zero: W_ii = Σ_μ x_μi² couples each unit to itself", dict(diagonal="kept")),
    ("the diagonal is set to 1 instead of 0", dict(diagonal="one")),
    ("W is divided by the number of patterns N (the exercise asks for the plain sum)", dict(scale="N")),
    ("W is divided by the dimension d (the exercise asks for the plain sum)", dict(scale="d")),
]
# X Xᵀ (the N × N overlaps instead of the d × d couplings) is caught at "shapes": the first case has N < d.

_register("hebbian_weights", _hebbian_variant, _HEBBIAN_MISTAKES)


@exercise("hebbian_weights", module="04", title="Hebbian storage", points=1, difficulty="easy", minutes=10,
          signature="hebbian_weights(X) -> W (..., d, d) from X (..., N, d): W = sum_mu x_mu x_mu^T with a zero "
                    "diagonal")
def grade_hebbian_weights(g: Grader, fn) -> None:
    g.check_signature(fn, ["X"])
    specs = [((3, 8), torch.float64, "N < d"), ((6, 6), torch.float64, "N = d"), ((2, 4, 10), torch.float64,
             "a leading dimension"), ((2, 2, 5, 7), torch.float32, "two leading dimensions, float32"),
             ((1, 4), torch.float64, "one pattern")]
    for shape, dtype, label in specs:
        X = _signs(g, *shape, dtype=dtype)
        case = f"X: {shape} of ±1, {dtype_name(dtype)}, {label}"
        g.check_tensor(g.call(fn, case, X), ref.hebbian_weights(X.double()), "W", case, dtype=dtype, args=dict(X=X))
    # Real-valued patterns as well: the rule is not only for ±1.
    X = g.randn(2, 5, 6)
    case = "X: (2, 5, 6) real-valued, float64"
    g.check_tensor(g.call(fn, case, X), ref.hebbian_weights(X), "W", case, args=dict(X=X))
    check_gradients(g, fn, ref.hebbian_weights, "X: (2, 5, 6) float64", dict(X=g.randn(2, 5, 6)), wrt=["X"])


# --------------------------------------------------------------------------------------------
# classical_update
# --------------------------------------------------------------------------------------------


def _classical_variant(xi, W, n_steps=1, *, ties="keep", order="sync", transpose=False, steps_offset=0,
                       carry_state=True):
    state = xi
    for _ in range(n_steps + steps_offset):
        source = state if carry_state else xi
        if order == "sync":
            field = source @ (W if transpose else W.transpose(-2, -1))
            if ties == "keep":
                new = torch.where(field > 0, 1.0, torch.where(field < 0, -1.0, source)).to(xi.dtype)
            elif ties == "zero":
                new = torch.sign(field)
            else:  # ties go to +1
                new = torch.where(field >= 0, 1.0, -1.0).to(xi.dtype)
        else:  # asynchronous: unit by unit, each seeing the newest values of the others
            new = source.clone()
            for i in range(xi.shape[-1]):
                f = new @ W[..., i, :].unsqueeze(-1)
                new[..., i:i + 1] = torch.where(f > 0, 1.0, torch.where(f < 0, -1.0, new[..., i:i + 1])).to(xi.dtype)
        state = new
    return state


_CLASSICAL_MISTAKES = [
    ("torch.sign is used as is: a unit whose field is exactly 0 becomes 0 instead of keeping its state",
     dict(ties="zero")),
    ("a unit whose field is exactly 0 becomes +1 instead of keeping its state", dict(ties="plus")),
    ("the units are updated one after another (asynchronously) instead of all at once from the same old state",
     dict(order="async")),
    ("the field is ξ W (Σ_j W_ji ξ_j) instead of W ξ (Σ_j W_ij ξ_j): W is used transposed", dict(transpose=True)),
    ("the loop runs n_steps + 1 updates (one too many)", dict(steps_offset=1)),
    ("the loop runs n_steps − 1 updates (one too few)", dict(steps_offset=-1)),
    ("every update starts again from the initial ξ: the state is not carried from one step to the next",
     dict(carry_state=False)),
]

_register("classical_update", _classical_variant, _CLASSICAL_MISTAKES)


def _integer_matrix(g: Grader, d: int, symmetric: bool, dtype=torch.float64) -> torch.Tensor:
    """Small integer weights (ties happen) with a zero diagonal; symmetric or not."""
    W = g.randint(-2, 3, (d, d)).to(dtype)
    if symmetric:
        W = torch.triu(W, 1) + torch.triu(W, 1).T
    return W.masked_fill(torch.eye(d, dtype=torch.bool), 0.0)


@exercise("classical_update", module="04", title="The classical (synchronous) sign update", points=2,
          difficulty="easy", minutes=15,
          signature="classical_update(xi, W, n_steps=1) -> xi_new (..., S, d) in {-1, +1}; n_steps synchronous "
                    "updates xi_i <- sgn(sum_j W_ij xi_j); a unit whose field is exactly 0 keeps its state")
def grade_classical_update(g: Grader, fn) -> None:
    g.check_signature(fn, ["xi", "W", "n_steps"])
    cases = []
    patterns = _signs(g, 2, 8)
    cases.append((_signs(g, 6, 8), ref.hebbian_weights(patterns), 1, torch.float64, "Hebbian W of 2 patterns"))
    cases.append((_signs(g, 5, 7), _integer_matrix(g, 7, symmetric=False), 1, torch.float64,
                  "a non-symmetric integer W (a field of exactly 0 occurs)"))
    cases.append((_signs(g, 4, 9), _integer_matrix(g, 9, symmetric=True), 3, torch.float64, "n_steps=3"))
    cases.append((_signs(g, 2, 4, 6), _integer_matrix(g, 6, symmetric=False).expand(2, 6, 6), 2, torch.float64,
                  "a leading dimension, n_steps=2"))
    cases.append((_signs(g, 3, 6, dtype=torch.float32), _integer_matrix(g, 6, True, torch.float32), 2,
                  torch.float32, "float32, n_steps=2"))
    for xi, W, n_steps, dtype, label in cases:
        args = dict(xi=xi, W=W, n_steps=n_steps)
        case = f"xi: {tuple(xi.shape)}, W: {tuple(W.shape)}, {dtype_name(dtype)}, {label}"
        result = g.call(fn, case, **args)
        g.check_tensor(result, ref.classical_update(**as_float64(args)), "xi_new", case, dtype=dtype, args=args)


# --------------------------------------------------------------------------------------------
# update_is_attention
# --------------------------------------------------------------------------------------------


def _attention_variant(R, Y, W_Q, W_K, W_V, *, values="YWkWv", scale="sqrt_dk", axis=-1):
    Q, K = R @ W_Q, Y @ W_K
    if values == "YWkWv":
        V = K @ W_V
    elif values == "YWv":  # only computable when d_y = d_k
        V = Y @ W_V
    else:
        V = K
    beta = {"sqrt_dk": 1 / math.sqrt(K.shape[-1]), "sqrt_dy": 1 / math.sqrt(Y.shape[-1]), "one": 1.0,
            "dk": 1 / K.shape[-1]}[scale]
    weights = torch.softmax(beta * Q @ K.transpose(-2, -1), dim=axis)
    return weights @ V, weights


_ATTENTION_MISTAKES = [
    ("the values are Y W_V instead of Y W_K W_V (in the Hopfield layer the values are made from the keys)",
     dict(values="YWv")),
    ("W_V is not applied: the values are the keys K = Y W_K", dict(values="K")),
    ("β is 1/√d with d the size of the stored patterns Y, instead of 1/√d_k of the keys", dict(scale="sqrt_dy")),
    ("the scores are not scaled (β = 1)", dict(scale="one")),
    ("β is 1/d_k instead of 1/√d_k", dict(scale="dk")),
    ("the softmax runs over the queries (dim=-2) instead of over the keys", dict(axis=-2)),
]

_register("update_is_attention", _attention_variant, _ATTENTION_MISTAKES)


@exercise("update_is_attention", module="04", title="The Hopfield update with projections is attention",
          points=2, difficulty="medium", minutes=15,
          signature="update_is_attention(R, Y, W_Q, W_K, W_V) -> (Z (..., S, d_v), weights (..., S, N)); "
                    "Q = R W_Q, K = Y W_K, V = Y W_K W_V, Z = softmax(beta Q K^T) V with beta = 1/sqrt(d_k), "
                    "written with scaled_dot_product_attention")
def grade_update_is_attention(g: Grader, fn) -> None:
    g.check_signature(fn, ATTENTION_PARAMS)
    # (leading, S, N, d_r, d_y, d_k, d_v, dtype, label); the first case is square so that every mistake is visible
    specs = [
        ((), 5, 5, 6, 6, 6, 6, torch.float64, "all sizes equal"),
        ((2,), 4, 7, 5, 9, 4, 3, torch.float64, "d_r, d_y, d_k, d_v all different"),
        ((2, 3), 3, 6, 8, 8, 16, 8, torch.float64, "(B, NH, ...) leading dimensions, d_k = 16"),
        ((2,), 6, 4, 5, 7, 4, 6, torch.float32, "float32"),
    ]
    records, rule_case = [], ""
    for lead, S, N, d_r, d_y, d_k, d_v, dtype, label in specs:
        args = dict(R=g.randn(*lead, S, d_r, dtype=dtype), Y=g.randn(*lead, N, d_y, dtype=dtype),
                    W_Q=g.randn(d_r, d_k, dtype=dtype, scale=0.7), W_K=g.randn(d_y, d_k, dtype=dtype, scale=0.7),
                    W_V=g.randn(d_k, d_v, dtype=dtype))
        case = (f"R: {tuple(args['R'].shape)}, Y: {tuple(args['Y'].shape)}, d_k={d_k}, d_v={d_v}, "
                f"{dtype_name(dtype)}, {label}")
        if records:
            result = g.call(fn, case, **args)
        else:  # the first case also records which functions the code called (for the rule below)
            result, record = g.call_recording(fn, case, operators=False, **args)
            records, rule_case = [record], case
        g.check_outputs(result, ref.update_as_attention(**as_float64(args)), ("Z", "weights"), case, dtype=dtype,
                        args=args)
    args = dict(R=g.randn(2, 3, 4), Y=g.randn(2, 5, 6), W_Q=g.randn(4, 4), W_K=g.randn(6, 4), W_V=g.randn(4, 3))
    check_gradients(g, fn, ref.update_as_attention, "R: (2, 3, 4), Y: (2, 5, 6), float64", args,
                    wrt=["R", "Y", "W_Q", "W_K", "W_V"])
    # The exercise's point is that the update IS the attention call: module 03's function (recorded as a
    # course_lib call) or PyTorch's must be among the functions the learner's code called.
    used = [n for r in records for n in r.course + r.functions if n.endswith("scaled_dot_product_attention")]
    g.expect(bool(used), "rules", f"follows the exercise's rules ({rule_case})",
             "your function computes the attention itself; the exercise asks you to write it with "
             "scaled_dot_product_attention (module 03's, imported above), so that the Hopfield update is "
             "literally that call")
