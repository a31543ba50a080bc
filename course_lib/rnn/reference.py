"""A vanilla RNN in plain PyTorch, and backpropagation through time by hand.

Conventions are those of ``torch.nn.RNN(batch_first=True)``:

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

with ``weight_ih`` (H, I), ``weight_hh`` (H, H), biases (H,), x (B, S, I), h (B, H).
"""

from __future__ import annotations

import torch

_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def _activation(nonlinearity: str):
    if nonlinearity not in _ACTIVATIONS:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return _ACTIVATIONS[nonlinearity]


def rnn_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """One step of ``torch.nn.RNN``: x (B, I), h (B, H) -> h_new (B, H)."""
    act = _activation(nonlinearity)
    # $$a_t = W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}$$
    a = x @ weight_ih.T + h @ weight_hh.T  # (B, H)
    if bias_ih is not None:
        a = a + bias_ih
    if bias_hh is not None:
        a = a + bias_hh
    # $$h_t = \tanh(a_t)$$
    return act(a)


def rnn(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """Run the cell over a sequence: x (B, S, I), h0 (B, H) -> (out (B, S, H), h_n (B, H))."""
    B, S, _ = x.shape
    if h0 is None:
        h0 = x.new_zeros(B, weight_hh.shape[0])
    h = h0
    outs = []
    for t in range(S):
        h = rnn_cell(x[:, t], h, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
        outs.append(h)
    return torch.stack(outs, dim=1), h  # (B, S, H), (B, H)


def rnn_bptt(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_out, nonlinearity="tanh"):
    """Gradients of ``L = (out * grad_out).sum()`` by backpropagation through time, without autograd.

    Returns a dict with the keys ``x, h0, weight_ih, weight_hh, bias_ih, bias_hh``.

    The backward recursion over the 0-based index t = S-1 down to 0 (index t holds step t + 1 of the
    maths, so ``grad_out[:, t]`` is g_{t+1}), with a_t the pre-activation:

        dL/dh_t  = grad_out_t + W_hh^T-path from step t+1      (carried in ``dh``)
        dL/da_t  = dL/dh_t * act'(a_t)                          (tanh' = 1 - h_t^2)
        dW_ih += da_t^T x_t,  dW_hh += da_t^T h_{t-1},  db += sum_B da_t
        dL/dx_t = da_t W_ih,  and the carry to step t-1 is da_t W_hh
    """
    with torch.inference_mode():
        out, _ = rnn(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)  # (B, S, H)
        B, S, _ = x.shape
        h_prev = torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)  # h_{t-1} for every t: (B, S, H)
        d_w_ih = torch.zeros_like(weight_ih)
        d_w_hh = torch.zeros_like(weight_hh)
        d_b = torch.zeros(weight_hh.shape[0], dtype=x.dtype, device=x.device)
        d_x = torch.zeros_like(x)
        dh = torch.zeros_like(h0)  # gradient reaching h_t from the future
        for t in reversed(range(S)):
            dh = dh + grad_out[:, t]
            # Derivative of the nonlinearity, evaluated at this step's output (tanh) or pre-activation (relu).
            if nonlinearity == "tanh":
                da = dh * (1 - out[:, t] ** 2)
            else:
                da = dh * (out[:, t] > 0).to(x.dtype)
            d_w_ih += da.T @ x[:, t]
            d_w_hh += da.T @ h_prev[:, t]
            d_b += da.sum(0)
            d_x[:, t] = da @ weight_ih
            # The only path to the past: through W_hh.
            dh = da @ weight_hh
        return {"x": d_x, "h0": dh, "weight_ih": d_w_ih, "weight_hh": d_w_hh,
                "bias_ih": d_b, "bias_hh": d_b.clone()}


def spectral_radius(w: torch.Tensor) -> float:
    """Largest absolute eigenvalue of a square matrix."""
    return float(torch.linalg.eigvals(w.to(torch.float64)).abs().max())


def scale_to_spectral_radius(w: torch.Tensor, rho: float) -> torch.Tensor:
    """``w`` rescaled so that its spectral radius is ``rho``."""
    return w * (rho / spectral_radius(w))


def gradient_norms_over_lag(weight_hh: torch.Tensor, S: int = 60, B: int = 32, I: int = 8,
                            input_scale: float = 1.0, seed: int = 0,
                            nonlinearity: str = "tanh") -> torch.Tensor:
    """||dL/dh_{S-1-k}|| for k = 0..S-1, where L depends on the last hidden state only.

    Measured with :func:`rnn_bptt`: the loss gradient enters at the last step only, so the norm of
    the carried gradient at step S-1-k is the gradient across a time lag of k steps (averaged over
    the batch, relative to the norm at lag 0).
    """
    gen = torch.Generator().manual_seed(seed)
    H = weight_hh.shape[0]
    dtype = torch.float64
    w_hh = weight_hh.to(dtype)
    w_ih = torch.randn(H, I, generator=gen, dtype=dtype) / I**0.5
    x = torch.randn(B, S, I, generator=gen, dtype=dtype) * input_scale
    h0 = torch.zeros(B, H, dtype=dtype)
    out, _ = rnn(x, h0, w_ih, w_hh, nonlinearity=nonlinearity)
    dh = torch.randn(B, H, generator=gen, dtype=dtype)
    norms = [dh.norm(dim=1).mean()]
    for t in reversed(range(1, S)):
        d = 1 - out[:, t] ** 2 if nonlinearity == "tanh" else (out[:, t] > 0).to(dtype)
        dh = (dh * d) @ w_hh
        norms.append(dh.norm(dim=1).mean())
    norms = torch.stack(norms)
    return norms / norms[0]


def largest_singular_value(w: torch.Tensor) -> float:
    """sigma_max(w) = ||w||_2: the most one multiplication by ``w`` can stretch a vector."""
    return float(torch.linalg.matrix_norm(w.to(torch.float64), ord=2))


def nonnormal_example(H: int = 8, rho: float = 0.9, coupling: float = 0.3) -> torch.Tensor:
    """A recurrent matrix whose spectral radius is ``rho`` but whose powers first grow: a leaky delay line.

    W = rho * I + coupling * S, with S the shift that lets unit j+1 feed unit j. W is triangular, so
    every eigenvalue equals ``rho``; it is *non-normal* (W W^T != W^T W), so sigma_max = ||W||_2 is
    close to rho + coupling, and ||W^k|| can exceed 1 for many steps although rho < 1.
    """
    if H < 2:
        raise ValueError(f"the delay line needs H >= 2 units, got {H}")
    eye = torch.eye(H, dtype=torch.float64)
    shift = torch.diag(torch.ones(H - 1, dtype=torch.float64), diagonal=1)
    return rho * eye + coupling * shift


def matrix_power_norms(w: torch.Tensor, k_max: int) -> torch.Tensor:
    """||W^k||_2 for k = 0 .. k_max (float64): the most a linear RNN's gradient can grow across k steps.

    For every k, rho(W)^k <= ||W^k|| <= sigma_max(W)^k, and ||W^k||^(1/k) -> rho(W) as k grows
    (Gelfand's formula): the spectral radius is the asymptotic rate, sigma_max the one-step bound.
    """
    w = w.to(torch.float64)
    power = torch.eye(w.shape[0], dtype=torch.float64)
    powers = []
    for _ in range(k_max + 1):
        powers.append(power)
        power = power @ w
    return torch.linalg.matrix_norm(torch.stack(powers), ord=2)  # one batched SVD: (k_max + 1,)


def rnn_step_jacobian(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """dh_t/dh_{t-1} of one step for every batch element: (B, H, H), ``J[b, i, j] = dh_new[b, i] / dh[b, j]``.

    From h_t = phi(a_t) with a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, the chain rule gives
    diag(phi'(a_t)) W_hh: row i of W_hh scaled by phi'(a_i) (tanh' = 1 - h_t^2 at the step's own output).
    """
    h_new = rnn_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)  # (B, H)
    # $$\phi'(a_t) = 1 - h_t^2 \ (\tanh), \quad \mathbb 1[h_t > 0] \ (\mathrm{relu})$$
    deriv = 1 - h_new**2 if nonlinearity == "tanh" else (h_new > 0).to(h_new.dtype)
    # $$\partial h_t / \partial h_{t-1} = \operatorname{diag}(\phi'(a_t))\, W_{hh}$$
    return deriv.unsqueeze(-1) * weight_hh  # (B, H, H)


def state_gradient_norms(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, loss_of_last_state=None,
                         nonlinearity="tanh") -> torch.Tensor:
    """||dL_b/dh_t|| for every sequence b and step t = 1..S (B, S), where L_b depends on the last state only.

    ``loss_of_last_state(h_S)`` returns one loss per sequence (B,); sequences do not interact, so the
    gradient of their sum gives each sequence's own gradients. A measurement tool (it uses autograd):
    column t - 1 holds the gradient that reaches h_t from the loss, across a lag of S - t steps.
    """
    if loss_of_last_state is None:
        raise ValueError("loss_of_last_state is required: a function of h_S (B, H) returning a loss per sequence (B,)")
    h0 = x.new_zeros(x.shape[0], weight_hh.shape[0]) if h0 is None else h0
    with torch.enable_grad():
        h = h0.detach()
        states = []
        for t in range(x.shape[1]):
            h = rnn_cell(x[:, t], h, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity)
            if not h.requires_grad:  # the first step, when no weight requires grad
                h = h.detach().requires_grad_(True)
            h.retain_grad()
            states.append(h)
        loss_of_last_state(h).sum().backward(inputs=states)
    return torch.stack([s.grad.norm(dim=-1) for s in states], dim=1).detach()  # (B, S)
