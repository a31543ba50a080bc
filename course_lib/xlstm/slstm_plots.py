"""Figures of module 05 (the sLSTM), drawn with matplotlib's object API (no ``pyplot`` state).

Every function returns a :class:`matplotlib.figure.Figure`; a notebook displays it, the slide build
saves it (``course_lib.tools.figures``).
"""

from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from course_lib.xlstm.slstm import headwise_recurrence, initial_state, slstm_step, slstm_unstabilised

GATE_NAMES = ("input ĩ", "forget f̃", "cell z̃", "output õ")


def plot_block_diagonal(R: torch.Tensor, dense: torch.Tensor | None = None) -> Figure:
    """The recurrent weights as matrices: each gate's (H, H) block-diagonal matrix, heads outlined.

    ``R`` (4, NH, DH, DH) [gate, head, out, in]; ``dense`` (4H, H), e.g. an LSTM's ``weight_hh``, is
    drawn alongside for contrast when given.
    """
    _, NH, DH, _ = R.shape
    H = NH * DH
    panels = 5 if dense is not None else 4
    fig = Figure(figsize=(2.3 * panels, 2.9), layout="constrained")
    axes = fig.subplots(1, panels)
    vmax = float(R.abs().max())
    for gate, ax in enumerate(axes[:4]):
        full = torch.block_diag(*R[gate].detach().float())  # (H, H): out x in
        ax.imshow(full.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        for k in range(NH):
            ax.add_patch(Rectangle((k * DH - 0.5, k * DH - 0.5), DH, DH, fill=False, ec="k", lw=1.2))
        ax.set_title(f"R, {GATE_NAMES[gate]}")
        ax.set_xlabel("from $h_{t-1}$")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel("to unit")
    if dense is not None:
        w = dense.detach().float()[H:2 * H]  # the forget gate's rows of a dense (4H, H) matrix
        axes[4].imshow(w.numpy(), cmap="RdBu_r", vmin=-float(w.abs().max()), vmax=float(w.abs().max()))
        axes[4].set_title("LSTM, forget f̃:\none dense matrix")
        axes[4].set_xticks([])
        axes[4].set_yticks([])
    fig.suptitle(f"{NH} heads of {DH} units: memory mixes inside a head (black squares), never across")
    return fig


def stabiliser_trace(i_pre: torch.Tensor, f_pre: torch.Tensor, forget_gate: str = "sigmoid") -> dict[str, torch.Tensor]:
    """For one unit with given pre-activations ĩ_t, f̃_t (S,): m_t, log n̄_t (the true normaliser) and ĩ_t.

    Runs the stabilised and the unstabilised recurrences in float64 with z̃ = õ = 0 and no recurrent
    weights, so the numbers are those of the gates alone.
    """
    S = i_pre.shape[0]
    wx = torch.zeros(1, S, 4, dtype=torch.float64)
    wx[0, :, 0], wx[0, :, 1] = i_pre.double(), f_pre.double()
    R, b = torch.zeros(4, 1, 1, 1, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    state = initial_state(1, 1, torch.float64)
    ms = []
    for t in range(S):
        _, state = slstm_step(wx[:, t], R, b, state, forget_gate)
        ms.append(state[3][0, 0])
    n_bar = []
    st = None
    for t in range(S):
        _, st = slstm_unstabilised(wx[:, t:t + 1], R, b, st, forget_gate, return_last_states=True)
        n_bar.append(st[2][0, 0])
    return {"m": torch.stack(ms), "log_n_bar": torch.log(torch.stack(n_bar)), "i_pre": i_pre.double()}


def plot_stabiliser(trace: dict[str, torch.Tensor]) -> Figure:
    """ĩ_t, the stabiliser m_t and log of the true normaliser n̄_t against t, with float32's exp limit."""
    fig = Figure(figsize=(8.0, 3.4), layout="constrained")
    ax = fig.subplots()
    t = range(1, len(trace["m"]) + 1)
    ax.plot(t, trace["i_pre"].numpy(), "o", ms=3, color="0.6", label=r"$\tilde\imath_t$")
    ax.plot(t, trace["m"].numpy(), "-", lw=2, color="C3", label=r"stabiliser $m_t$")
    ax.plot(t, trace["log_n_bar"].numpy(), "--", lw=1.5, color="C0", label=r"$\log \bar n_t$ (true normaliser)")
    ax.axhline(math.log(torch.finfo(torch.float32).max), color="k", ls=":", lw=1)
    ax.text(1, math.log(torch.finfo(torch.float32).max) + 4, "float32: exp overflows above 88.7")
    ax.set_xlabel("step $t$")
    ax.set_ylabel("log scale")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def plot_accuracy_by_revisions(counts: list[int], curves: dict[str, list[list[float]]],
                               baselines: dict[str, float] | None = None) -> Figure:
    """Accuracy against the number of revisions of the running maximum, mean ± spread over seeds.

    ``curves`` maps a model name to one list per seed of accuracies at ``counts``.
    """
    fig = Figure(figsize=(7.0, 3.4), layout="constrained")
    ax = fig.subplots()
    for name, per_seed in curves.items():
        acc = torch.tensor(per_seed, dtype=torch.float64)  # (seeds, len(counts))
        mean, lo, hi = acc.mean(0), acc.min(0).values, acc.max(0).values
        ax.plot(counts, mean.numpy(), "o-", label=name)
        ax.fill_between(counts, lo.numpy(), hi.numpy(), alpha=0.2)
    for k, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color="0.5", ls=[":", "--"][k % 2], lw=1, label=name)
    ax.set_xlabel("revisions: how often the running maximum changed")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def heads_leak(R: torch.Tensor) -> float:
    """How much head 0's units move other heads' pre-activations (0 for a block-diagonal recurrence)."""
    _, NH, DH, _ = R.shape
    h = torch.zeros(1, NH * DH, dtype=R.dtype)
    h[0, :DH] = 1.0
    out = headwise_recurrence(h, R).reshape(4, NH, DH)
    return float(out[:, 1:].abs().max()) if NH > 1 else 0.0


def softmax_over_time(i_pre: torch.Tensor, f_pre: torch.Tensor) -> torch.Tensor:
    """The weights of c_t/n_t = Σ_s w_s z_s for one unit, at every t: -> (S, S), row t = weights over s ≤ t.

    w_s ∝ exp(ĩ_s + Σ_{r=s+1..t} log σ(f̃_r)) (sigmoid forget gate), normalised over s ≤ t.
    """
    log_f = torch.nn.functional.logsigmoid(f_pre.double())
    S = i_pre.shape[0]
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), log_f.cumsum(0)])  # cum[t] = Σ_{r<=t} log f_r
    t_idx, s_idx = torch.arange(1, S + 1)[:, None], torch.arange(1, S + 1)[None, :]
    logw = i_pre.double()[None, :] + cum[t_idx] - cum[s_idx]  # (S, S): ĩ_s + Σ_{r=s+1..t} log f_r
    logw = logw.masked_fill(s_idx > t_idx, -math.inf)
    return torch.softmax(logw, dim=1)


def plot_softmax_over_time(i_pre: torch.Tensor, f_pre: torch.Tensor, times: tuple[int, ...]) -> Figure:
    """Bars of the weights over the past at a few times t (1-based): a new, larger ĩ takes over."""
    w = softmax_over_time(i_pre, f_pre)
    S = i_pre.shape[0]
    fig = Figure(figsize=(8.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    axes[0].bar(range(1, S + 1), i_pre.numpy(), color="0.6")
    axes[0].set_title(r"input gate $\tilde\imath_s$")
    axes[0].set_xlabel("step $s$")
    width = 0.8 / len(times)
    for k, t in enumerate(times):
        axes[1].bar([s + 1 + (k - (len(times) - 1) / 2) * width for s in range(S)], w[t - 1].numpy(), width=width,
                    label=f"$t = {t}$")
    axes[1].set_title(r"weight of $z_s$ in $c_t / n_t$")
    axes[1].set_xlabel("step $s$")
    axes[1].legend()
    return fig


def draw_slstm_cell() -> Figure:
    """A diagram of one sLSTM step: pre-activations, the four gates, the two states, the ratio, the heads."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig = Figure(figsize=(11.0, 4.6))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 4.6)
    ax.axis("off")

    def box(x, y, text, color="#e8f0fb", w=1.5, h=0.62):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04", fc=color, ec="0.3"))
        ax.text(x, y, text, ha="center", va="center", fontsize=14)

    def arrow(a, b, color="0.3"):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, color=color, lw=1.4))

    box(0.9, 3.9, "$x_t$", "#ffffff", w=0.9)
    box(0.9, 1.0, "$h_{t-1}$", "#ffffff", w=1.0)
    box(2.7, 2.45, "$Wx_t + Rh_{t-1} + b$\n(R: per head)", "#fff4d6", w=2.5, h=1.0)
    arrow((1.35, 3.75), (2.2, 2.95))
    arrow((1.4, 1.15), (2.2, 1.95))
    gates = [("$i_t = e^{\\tilde\\imath}$", 4.0, "#fde2e1"),
             ("$f_t = \\sigma(\\tilde f)$ or $e^{\\tilde f}$", 3.0, "#fde2e1"),
             ("$z_t = \\tanh(\\tilde z)$", 1.9, "#e3f4e1"), ("$o_t = \\sigma(\\tilde o)$", 0.8, "#e3f4e1")]
    for text, y, color in gates:
        box(5.35, y, text, color, w=2.3)
        arrow((3.95, 2.45), (4.2, y))
    box(8.0, 3.5, "$c_t = f_t c_{t-1} + i_t z_t$", "#e8f0fb", w=2.7)
    box(8.0, 2.35, "$n_t = f_t n_{t-1} + i_t$", "#e8f0fb", w=2.7)
    box(8.0, 1.0, "$h_t = o_t \\odot c_t / n_t$", "#dfe9f7", w=2.7)
    for y_gate, y_state in ((4.0, 3.5), (4.0, 2.35), (3.0, 3.5), (3.0, 2.35), (1.9, 3.5), (0.8, 1.0)):
        arrow((6.5, y_gate), (6.65, y_state))
    arrow((8.0, 3.18), (8.0, 2.68))
    arrow((8.0, 2.03), (8.0, 1.32))
    ax.text(8.4, 4.3, "stabiliser: $c, n$ in units of $e^{m_t}$", ha="center", va="center", fontsize=13, color="C3")
    arrow((8.0, 0.68), (1.45, 0.55), color="C0")
    ax.text(4.7, 0.22, "memory mixing: $h_t$ feeds the gates of step $t+1$", ha="center", fontsize=13, color="C0")
    return fig
