"""A fused Triton kernel for the pointwise part of the RNN cell.

The two matrix products stay in PyTorch (they are already fast); what a naive implementation
does next -- add ``x W_ih^T``, ``h W_hh^T``, two biases, then apply tanh -- reads and writes the
(B, H) pre-activation four times. The kernel below reads the two products once, adds the biases
and applies the nonlinearity in registers, and writes h once: read 2BH + 2H elements, write BH.

On a machine without a GPU this runs through Triton's interpreter (``course_lib._triton``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rnn_pointwise_kernel(ax_ptr, ah_ptr, b_ptr, out_ptr, n_elements, H,
                          RELU: tl.constexpr, UPCAST: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    # [BLOCK] elements of the (B, H) pre-activation, flattened; the bias index is the column.
    a = tl.load(ax_ptr + offs, mask=mask, other=0.0) + tl.load(ah_ptr + offs, mask=mask, other=0.0) \
        + tl.load(b_ptr + offs % H, mask=mask, other=0.0)
    if UPCAST:
        # Half-precision inputs: compute in fp32, round once on the store.
        a = a.to(tl.float32)
    if RELU:
        h = tl.maximum(a, 0.0)
    else:
        # tanh(a) = 2 sigmoid(2a) - 1, which is stable for large |a|.
        h = 2.0 * tl.sigmoid(2.0 * a) - 1.0
    tl.store(out_ptr + offs, h.to(out_ptr.dtype.element_ty), mask=mask)


def rnn_cell_triton(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh",
                    block: int = 256):
    """Same signature and result as :func:`course_lib.rnn.rnn_cell` (forward only, no autograd)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    H = weight_hh.shape[0]
    ax = (x @ weight_ih.T).contiguous()  # (B, H)
    ah = (h @ weight_hh.T).contiguous()  # (B, H)
    bias = torch.zeros(H, dtype=x.dtype, device=x.device)
    if bias_ih is not None:
        bias = bias + bias_ih
    if bias_hh is not None:
        bias = bias + bias_hh
    out = torch.empty_like(ax)
    n = out.numel()
    grid = (triton.cdiv(n, block),)
    _rnn_pointwise_kernel[grid](ax, ah, bias.contiguous(), out, n, H, RELU=nonlinearity == "relu",
                                UPCAST=x.dtype in (torch.float16, torch.bfloat16), BLOCK=block)
    return out
