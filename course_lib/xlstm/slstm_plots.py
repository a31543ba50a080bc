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
        ax.set_title(f"R, {GATE_NAMES[gate]} gate", fontsize=11)
        ax.set_xlabel("from $h_{t-1}$ unit")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel("to pre-activation unit")
    if dense is not None:
        w = dense.detach().float()[H:2 * H]  # the forget gate's rows of a dense (4H, H) matrix
        axes[4].imshow(w.numpy(), cmap="RdBu_r", vmin=-float(w.abs().max()), vmax=float(w.abs().max()))
        axes[4].set_title("LSTM, forget gate:\none dense matrix", fontsize=11)
        axes[4].set_xticks([])
        axes[4].set_yticks([])
    fig.suptitle(f"{NH} heads of {DH} units: memory mixes inside a head (black squares), never across",
                 fontsize=12)
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
    ax.text(1, math.log(torch.finfo(torch.float32).max) + 2, "float32: exp overflows above 88.7", fontsize=9)
    ax.set_xlabel("step $t$")
    ax.set_ylabel("log scale")
    ax.legend(loc="lower right", fontsize=9)
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
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def heads_leak(R: torch.Tensor) -> float:
    """How much head 0's units move other heads' pre-activations (0 for a block-diagonal recurrence)."""
    _, NH, DH, _ = R.shape
    h = torch.zeros(1, NH * DH, dtype=R.dtype)
    h[0, :DH] = 1.0
    out = headwise_recurrence(h, R).reshape(4, NH, DH)
    return float(out[:, 1:].abs().max()) if NH > 1 else 0.0
