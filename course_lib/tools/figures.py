"""The figures of the slide decks, computed with plain ``torch`` and drawn with matplotlib's Agg canvas.

Every figure is seeded and drawn from its own ``torch.Generator`` (the global RNG is left as it was),
takes at most a couple of seconds on a 2-core CPU, and is saved as a PNG without a timestamp, so a
rebuild gives the same files. The one exception is the measured attention time (module 03), which
is a wall-clock measurement of this machine. Figures use matplotlib's object API (``Figure``), never
``pyplot``, so building slides inside a notebook does not change its plotting backend.

``make_figures("01", out)`` draws the figures of deck 01 into ``out`` and returns their paths.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyBboxPatch

from course_lib.hopfield import slide_figures as hopfield_slide_figures
from course_lib.tools import figures_07
from course_lib.tools.figure_files import save_figure as _save
from course_lib.xlstm import mlstm_slide_figures, slstm_slide_figures

STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False, "legend.fontsize": 9, "legend.frameon": False}


def _figure(ncols: int = 1, width: float = 8.0, height: float = 3.6) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


# ---------------------------------------------------------------------------------------------------
# 01  RNN and BPTT


def _box(ax, xy: tuple[float, float], text: str, color: str = "#e8f0fb", w: float = 0.9, h: float = 0.55,
         fontsize: int = 12) -> None:
    ax.add_patch(FancyBboxPatch((xy[0] - w / 2, xy[1] - h / 2), w, h, boxstyle="round,pad=0.04",
                                fc=color, ec="0.3", lw=1.2))
    ax.text(*xy, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], color: str = "0.25", **kw) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.4,
                                                      "shrinkA": 0, "shrinkB": 0, **kw})


def _diagram(width: float, height: float, xlim: tuple[float, float], ylim: tuple[float, float]):
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def rnn_unrolled(path: Path) -> Path:
    """The RNN unrolled in time with the BPTT paths: the notebook's diagram (course_lib.rnn.plots)."""
    from course_lib.rnn.plots import draw_unrolled_rnn

    fig = Figure(figsize=(11.8, 4.36))
    draw_unrolled_rnn(fig.add_axes((0, 0, 1, 1)), fontsize=14)
    return _save(fig, path)


def rnn_tanh_derivative(path: Path) -> Path:
    """tanh and its derivative 1 - tanh^2: the factor every BPTT step multiplies in."""
    a = torch.linspace(-4, 4, 401)
    fig, (ax,) = _figure(width=7.0, height=3.2)
    ax.plot(a.numpy(), torch.tanh(a).numpy(), label=r"$\tanh(a)$")
    ax.plot(a.numpy(), (1 - torch.tanh(a) ** 2).numpy(), label=r"$\tanh'(a) = 1-\tanh^2(a)$")
    for lo, hi in ((-4, -2), (2, 4)):
        ax.axvspan(lo, hi, color="0.85", alpha=0.6, lw=0)
    ax.text(3.0, -0.6, "saturated:\n" r"$\tanh' < 0.07$", ha="center", fontsize=12)
    ax.text(-3.0, 0.4, "saturated:\n" r"$\tanh' < 0.07$", ha="center", fontsize=12)
    ax.set_xlabel("pre-activation $a$")
    ax.legend(loc="upper left", fontsize=12)
    return _save(fig, path)


def rnn_gradient_vs_lag(path: Path) -> Path:
    """||dL/dh_{T-k}|| against the lag k for several spectral radii of W_hh, linear and tanh RNN."""
    g = torch.Generator().manual_seed(1)
    H, T, B = 64, 100, 16
    W0 = torch.randn(H, H, generator=g, dtype=torch.float64)
    W0 = W0 / torch.linalg.eigvals(W0).abs().max()  # spectral radius 1
    w_ih = 0.5 * torch.randn(H, 1, generator=g, dtype=torch.float64)
    x = torch.randn(B, T, 1, generator=g, dtype=torch.float64)
    u = torch.randn(H, generator=g, dtype=torch.float64) / math.sqrt(H)  # L = u . h_T
    radii = (0.5, 0.9, 1.0, 1.2, 1.5, 3.0)
    fig, axes = _figure(ncols=2, width=9.0, height=3.6)
    lags = torch.arange(T)
    for rho, color in zip(radii, matplotlib.colormaps["viridis"](torch.linspace(0, 0.9, len(radii)).numpy()),
                          strict=True):
        W = rho * W0
        # linear RNN: dL/dh_{T-k} = (W^T)^k u
        delta, linear = u.clone(), []
        for _ in range(T):
            linear.append(delta.norm())
            delta = W.T @ delta
        axes[0].semilogy(lags.numpy(), torch.stack(linear).numpy(), color=color, label=rf"$\rho={rho}$")
        # tanh RNN: autograd gives dL/dh_t for every step t
        h = torch.zeros(B, H, dtype=torch.float64, requires_grad=True)
        states = []
        for t in range(T):
            h = torch.tanh(x[:, t] @ w_ih.T + h @ W.T)
            h.retain_grad()
            states.append(h)
        (h @ u).sum().backward()
        norms = torch.stack([s.grad.norm(dim=-1) for s in reversed(states)], dim=1)  # (B, T), k = 0..T-1
        axes[1].semilogy(lags.numpy(), norms.log().mean(0).exp().numpy(), color=color, label=rf"$\rho={rho}$")
    axes[0].set_title(r"linear: $h_t = W_{hh} h_{t-1}$")
    axes[1].set_title(r"tanh: $h_t = \tanh(W_{ih}x_t + W_{hh}h_{t-1})$")
    for ax in axes:
        ax.set_xlabel("lag $k$")
        ax.set_ylim(1e-30, 1e30)
    axes[0].set_ylabel(r"$\|\partial L / \partial h_{T-k}\|$")
    axes[1].legend(loc="upper left", ncols=2, fontsize=12)
    return _save(fig, path)


def rnn_nonnormal(path: Path) -> Path:
    """rho is a rate, not a bound: ||W^k|| of the leaky delay line (rho = 0.9) between rho^k and sigma_max^k."""
    from course_lib.rnn import gradient_norms_over_lag, nonnormal_example
    from course_lib.rnn.plots import plot_power_norms

    w = nonnormal_example(H=8, rho=0.9, coupling=0.3)
    fig, (ax,) = _figure(width=9.0, height=3.6)
    plot_power_norms(w, k_max=300, measured=gradient_norms_over_lag(w, S=100, input_scale=0.01), ax=ax,
                     title=r"$W_{hh} = 0.9\,I + 0.3\,S$ (H = 8): every eigenvalue is 0.9")
    ax.legend(fontsize=12, loc="lower center", bbox_to_anchor=(0.58, 0.0))  # the empty region under the hump
    return _save(fig, path)


def rnn_loss_cliff(path: Path) -> Path:
    """A one-unit RNN x_t = w sigmoid(x_{t-1}) + b: the loss in b has a cliff that steepens with T."""
    b = torch.linspace(-6.0, -2.0, 2001, dtype=torch.float64, requires_grad=True)
    fig, axes = _figure(ncols=2, width=9.0, height=3.4)
    for T in (5, 20, 50):
        x = torch.full_like(b, 4.0)
        for _ in range(T):
            x = 8.0 * torch.sigmoid(x) + b
        loss = x**2
        (grad,) = torch.autograd.grad(loss.sum(), b)
        axes[0].plot(b.detach().numpy(), loss.detach().numpy(), label=f"$T={T}$")
        axes[1].semilogy(b.detach().numpy(), grad.abs().numpy(), label=f"$T={T}$")
    axes[0].set_title(r"loss $x_T^2$,  $x_t = 8\,\sigma(x_{t-1}) + b$")
    axes[1].set_title(r"$|\partial L/\partial b|$")
    for ax in axes:
        ax.set_xlabel("bias $b$")
    axes[0].legend(fontsize=12)
    return _save(fig, path)


def adding_problem_sample(path: Path) -> Path:
    """One sequence of the adding problem: values, the two markers, and the target."""
    g = torch.Generator().manual_seed(17)
    T = 40
    values = torch.rand(T, generator=g)
    first = int(torch.randint(0, T // 10, (1,), generator=g))
    second = int(torch.randint(T // 2, T, (1,), generator=g))
    fig, (ax,) = _figure(width=8.0, height=2.8)
    colors = ["C1" if t in (first, second) else "0.7" for t in range(T)]
    ax.bar(range(T), values.numpy(), color=colors)
    for t in (first, second):
        ax.annotate("marker = 1", (t, values[t]), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=12)
    target = float(values[first] + values[second])
    ax.set_title(f"adding problem, $T={T}$: target $y = x_{{{first}}} + x_{{{second}}} = {target:.2f}$, "
                 f"read after step {T - 1}")
    ax.set_xlabel("time step $t$")
    ax.set_ylabel("value channel")
    ax.set_ylim(0, 1.25)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# 02  LSTM gates


def _op(ax, xy: tuple[float, float], symbol: str) -> None:
    ax.add_patch(Circle(xy, 0.22, fc="#fff4e0", ec="0.3", lw=1.2))
    ax.text(*xy, symbol, ha="center", va="center", fontsize=13)


def lstm_cell_diagram(path: Path) -> Path:
    """The LSTM cell: the additive cell path on top, the four gates below (the notebook draws the same)."""
    from course_lib.lstm.widgets import draw_lstm_cell

    fig = Figure(figsize=(9.0, 3.7))
    draw_lstm_cell(fig.add_axes((0, 0, 1, 1)))
    return _save(fig, path)


def lstm_cell_vs_rnn_gradient(path: Path) -> Path:
    """||dL/dc_{T-k}|| of an LSTM (forget biases 0, 1, 3), total and along the cell path alone, against an RNN's.

    The same measurement as notebook 02 §6 (``state_gradient_norms``, the same sequences and seeds), so
    the slide shows the notebook's figure; solid and dotted curves are the same quantity.
    """
    from torch import nn

    from course_lib.lstm import init_forget_bias, state_gradient_norms
    from course_lib.tasks.adding import adding_problem

    x, _ = adding_problem(16, 100, torch.Generator().manual_seed(1))
    fig, (ax,) = _figure(width=7.5, height=3.4)
    with torch.random.fork_rng():  # nn.RNN/nn.LSTM initialise from the global RNG; leave the caller's as it was
        torch.manual_seed(0)
        rnn = nn.RNN(2, 32, batch_first=True)
        layers = {}
        for bias in (0.0, 1.0, 3.0):
            torch.manual_seed(0)
            layers[bias] = init_forget_bias(nn.LSTM(2, 32, batch_first=True), bias)
    ax.semilogy(state_gradient_norms(rnn, x).numpy(), color="k", label=r"RNN, $h_t$")
    for (bias, layer), color in zip(layers.items(), ("C0", "C2", "C3"), strict=True):
        ax.semilogy(state_gradient_norms(layer, x).numpy(), color=color, label=rf"LSTM, $c_t$, forget bias {bias:g}")
        ax.semilogy(state_gradient_norms(layer, x, paths="cell").numpy(), color=color, ls=":", lw=1.5)
    ax.plot([], [], color="0.4", ls=":", lw=1.5, label="dotted: cell path alone")
    ax.set_xlabel("lag $k$")
    ax.set_ylabel(r"$\|\partial L/\partial s_{T-k}\| \,/\, \|\partial L/\partial s_T\|$")
    ax.set_ylim(1e-30, 10)
    ax.legend(loc="lower left", fontsize=12)
    return _save(fig, path)


def lstm_gates_on_adding(path: Path) -> Path:
    """Gate activations of a small LSTM trained for a second on the adding problem (T = 20)."""
    H, T, steps = 16, 20, 800
    g = torch.Generator().manual_seed(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        values = torch.rand(n, T, generator=g)
        markers = torch.zeros(n, T)
        rows = torch.arange(n)
        markers[rows, torch.randint(0, T // 10, (n,), generator=g)] = 1.0
        markers[rows, torch.randint(T // 2, T, (n,), generator=g)] = 1.0
        return torch.stack([values, markers], -1), (values * markers).sum(1)

    with torch.random.fork_rng():  # nn.LSTM initialises from the global RNG; leave the caller's as it was
        torch.manual_seed(0)
        lstm, head = torch.nn.LSTM(2, H, batch_first=True), torch.nn.Linear(H, 1)
    with torch.no_grad():
        lstm.bias_ih_l0[H:2 * H] += 1.0
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(steps):
        x, y = batch(64)
        loss = ((head(lstm(x)[0][:, -1]).squeeze(-1) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = batch(1)
    with torch.no_grad():
        pre = []
        h, c = torch.zeros(H), torch.zeros(H)
        cells = []
        for t in range(T):
            gates = lstm.weight_ih_l0 @ x[0, t] + lstm.bias_ih_l0 + lstm.weight_hh_l0 @ h + lstm.bias_hh_l0
            i, f, z, o = gates.chunk(4)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(z)
            h = torch.sigmoid(o) * torch.tanh(c)
            pre.append(gates)
            cells.append(c)
        pred = float(head(h))
    act = torch.sigmoid(torch.stack(pre))  # (T, 4H)
    fig = Figure(figsize=(9.0, 4.6), layout="constrained")
    axes = fig.subplots(5, 1, sharex=True, height_ratios=[1.1, 1, 1, 1, 1.3])
    colors = ["C1" if m else "0.7" for m in x[0, :, 1]]
    axes[0].bar(range(T), x[0, :, 0].numpy(), color=colors)
    axes[0].set_ylabel("input", rotation=0, ha="right", va="center")
    axes[0].set_title(f"target {float(y[0]):.2f}, prediction {pred:.2f} (orange: marked steps)", fontsize=13)
    for ax, k, name in zip(axes[1:4], (0, 1, 3), ("$i_t$", "$f_t$", "$o_t$"), strict=True):
        im = ax.imshow(act[:, k * H:(k + 1) * H].T.numpy(), aspect="auto", vmin=0, vmax=1, cmap="viridis",
                       interpolation="nearest")
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.set_yticks([])
        ax.grid(False)
    im = axes[4].imshow(torch.stack(cells).T.numpy(), aspect="auto", cmap="RdBu_r", vmin=-2, vmax=2,
                        interpolation="nearest")
    axes[4].set_ylabel("$c_t$", rotation=0, ha="right", va="center")
    axes[4].set_yticks([])
    axes[4].grid(False)
    axes[4].set_xticks(range(0, T, 2))
    axes[4].set_xlabel(f"time step $t$ (rows of each panel: the {H} units)")
    for ax in axes:  # readable when the figure is shrunk to fit a slide
        ax.yaxis.label.set_fontsize(14)
        ax.tick_params(labelsize=12)
    axes[4].xaxis.label.set_fontsize(13)
    for bar in (fig.colorbar(axes[1].images[0], ax=axes[1:4], shrink=0.9), fig.colorbar(im, ax=axes[4])):
        bar.ax.tick_params(labelsize=12)
    fig.axes[-2].set_ylabel("gate", fontsize=13)
    fig.axes[-1].set_ylabel("cell", fontsize=13)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# 03  Attention


# Deck 03 is shown with figures scaled to about 0.7 of their size: these sizes keep every text above
# the slide build's minimum once projected.
_FONTS_03 = {"font.size": 13, "axes.titlesize": 13, "axes.labelsize": 13, "xtick.labelsize": 12,
             "ytick.labelsize": 12, "legend.fontsize": 12}


def _fonts_03(draw: Callable[[Path], Path]) -> Callable[[Path], Path]:
    def drawn(path: Path) -> Path:
        with matplotlib.rc_context(_FONTS_03):
            return draw(path)

    drawn.__name__, drawn.__doc__ = draw.__name__, draw.__doc__
    return drawn


@_fonts_03
def softmax_saturation(path: Path) -> Path:
    """Without 1/sqrt(d): the softmax saturates, dL/dq grows, and a typical key's gradient vanishes."""
    from course_lib.attention import scale_sweep

    dims = [4, 16, 64, 256, 1024]
    curves = scale_sweep(dims, n_keys=64, n_queries=200, seed=4)
    fig, axes = _figure(ncols=3, width=12.0, height=3.9)
    styles = {"q·k (no scale)": ("o-", r"$q\cdot k$"), "q·k / √d": ("s-", r"$q\cdot k/\sqrt{d}$")}
    for name, c in curves.items():
        style, label = styles[name]
        axes[0].plot(dims, c["max_weight"], style, label=label)
        axes[1].plot(dims, c["grad"], style, label=r"$\|\partial L/\partial s\|$, " + label)
        axes[1].plot(dims, c["grad_q"], style[0] + "--", label=r"$\|\partial L/\partial q\|$, " + label)
        axes[2].plot(dims, c["grad_typical"], style, label=label)
    for ax in axes:
        ax.set_xscale("log", base=2)
    axes[1].set_yscale("log")
    axes[1].set_ylim(1e-3, 5)
    axes[2].set_yscale("log")
    axes[0].set_title("largest of 64 weights")
    axes[1].set_title("gradient norms")
    axes[2].set_title(r"typical key: median$_j\,|\partial L/\partial s_j|$")
    axes[0].legend()
    axes[1].legend(fontsize=11, loc="lower left")
    for ax in axes:
        ax.set_xlabel("head dimension $d$")
    return _save(fig, path)


@_fonts_03
def attention_masks(path: Path) -> Path:
    """Attention weights under a causal mask, and under causal plus padding masks (numbers readable when projected)."""
    g = torch.Generator().manual_seed(5)
    S, d, n_pad = 6, 16, 2
    q, k = torch.randn(2, S, d, generator=g).unbind(0)
    causal = torch.ones(S, S, dtype=torch.bool).tril()  # True = may attend
    padding = torch.ones(S, dtype=torch.bool)
    padding[S - n_pad:] = False  # the last two positions are padding
    fig, axes = _figure(ncols=2, width=9.6, height=3.9)
    for ax, mask, title in ((axes[0], causal, "causal"),
                            (axes[1], causal & padding, f"causal and padding (last {n_pad} keys)")):
        scores = (q @ k.T / math.sqrt(d)).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        im = ax.imshow(weights.numpy(), cmap="Blues", vmin=0, vmax=1)
        for r in range(S):
            for c in range(S):
                if mask[r, c]:
                    ax.text(c, r, f"{weights[r, c]:.2f}", ha="center", va="center", fontsize=12,
                            color="white" if weights[r, c] > 0.6 else "black")
                else:
                    ax.text(c, r, "×", ha="center", va="center", fontsize=14, color="0.6")
        ax.set_title(title)
        ax.set_xlabel("key position $j$")
        ax.set_ylabel("query position $i$")
        ax.set_xticks(range(S))
        ax.set_yticks(range(S))
        ax.grid(False)
    fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
    return _save(fig, path)


@_fonts_03
def attention_cost(path: Path) -> Path:
    """Measured time of softmax(QK^T/sqrt(d))V on this CPU and the memory of the S x S weights."""
    g = torch.Generator().manual_seed(6)
    d, lengths, repeats = 64, [128, 256, 512, 1024, 2048, 4096], 3
    times = []
    for S in lengths:
        q, k, v = torch.randn(3, S, d, generator=g).unbind(0)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.softmax(q @ k.T / math.sqrt(d), dim=-1) @ v  # (S, S) weights, then (S, d)
            best = min(best, time.perf_counter() - start)
        times.append(best)
    fig, axes = _figure(ncols=2, width=9.0, height=3.4)
    ref = [times[-1] * (S / lengths[-1]) ** 2 for S in lengths]
    axes[0].loglog(lengths, times, "o-", base=2, label="measured (best of 3)")
    axes[0].loglog(lengths, ref, "k:", base=2, label=r"$\propto S^2$")
    axes[0].set_title(f"time, one head, $d={d}$, float32, one CPU thread")
    axes[0].set_ylabel("seconds")
    axes[0].legend()
    mem = [S * S * 4 / 2**20 for S in lengths]
    axes[1].loglog(lengths, mem, "o-", base=2, color="C3")
    axes[1].set_title("memory of the $S\\times S$ weights (float32)")
    axes[1].set_ylabel("MiB")
    for ax in axes:
        ax.set_xlabel("sequence length $S$")
    return _save(fig, path)


@_fonts_03
def online_softmax(path: Path) -> Path:
    """Online softmax over blocks of scores: running max m and running sum l, rescaled at each block."""
    g = torch.Generator().manual_seed(7)
    S, block = 32, 8
    s = torch.randn(S, generator=g, dtype=torch.float64) * 2.0
    s[19] += 4.0  # a late maximum forces a rescale
    m, l = float("-inf"), 0.0
    ms, ls = [], []
    for start in range(0, S, block):
        blk = s[start:start + block]
        m_new = max(m, float(blk.max()))
        # rescale what was summed under the old max, then add the new block under the new max
        l = l * math.exp(m - m_new) + float(torch.exp(blk - m_new).sum())
        m = m_new
        ms.append(m)
        ls.append(l)
    exact = float(torch.logsumexp(s, 0))
    fig, axes = _figure(ncols=2, width=9.0, height=3.3)
    axes[0].bar(range(S), s.numpy(), color=["C0" if (j // block) % 2 == 0 else "C9" for j in range(S)])
    for b, m_b in enumerate(ms):
        axes[0].hlines(m_b, b * block - 0.5, (b + 1) * block - 0.5, color="C3", lw=2)
    axes[0].set_title("scores $s_j$ in blocks of 8; running max $m$ (red)")
    axes[0].set_xlabel("key position $j$")
    blocks = range(1, len(ms) + 1)
    axes[1].plot(blocks, [m_b + math.log(l_b) for m_b, l_b in zip(ms, ls, strict=True)], "o-",
                 label=r"running $m + \log \ell$")
    axes[1].axhline(exact, color="k", ls=":", label=r"exact $\log\sum_j e^{s_j}$")
    axes[1].set_xticks(list(blocks))
    axes[1].set_xlabel("blocks seen")
    axes[1].set_title("log-sum-exp after each block")
    axes[1].legend()
    return _save(fig, path)


FIGURES: dict[str, dict[str, Callable[[Path], Path]]] = {
    "01": {
        "01_unrolled.png": rnn_unrolled,
        "01_tanh_derivative.png": rnn_tanh_derivative,
        "01_gradient_vs_lag.png": rnn_gradient_vs_lag,
        "01_nonnormal.png": rnn_nonnormal,
        "01_loss_cliff.png": rnn_loss_cliff,
        "01_adding_problem.png": adding_problem_sample,
    },
    "02": {
        "02_lstm_cell.png": lstm_cell_diagram,
        "02_cell_vs_rnn_gradient.png": lstm_cell_vs_rnn_gradient,
        "02_gates_adding.png": lstm_gates_on_adding,
    },
    "03": {
        "03_softmax_saturation.png": softmax_saturation,
        "03_attention_masks.png": attention_masks,
        "03_attention_cost.png": attention_cost,
        "03_online_softmax.png": online_softmax,
    },
    "04": hopfield_slide_figures.FIGURES,
    "05": slstm_slide_figures.FIGURES,
    "06": mlstm_slide_figures.FIGURES,
    "07": figures_07.FIGURES,
}


def make_figures(module: str, out_dir: Path) -> list[Path]:
    """Draw the figures of deck ``module`` (e.g. ``"01"``) into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    threads = torch.get_num_threads()
    # These tensors are tiny: one thread is faster, and does not stall when the other cores are busy.
    torch.set_num_threads(1)
    try:
        with matplotlib.rc_context(STYLE):
            for name, draw in FIGURES.get(module, {}).items():
                paths.append(draw(out_dir / name))
    finally:
        torch.set_num_threads(threads)
    return paths
