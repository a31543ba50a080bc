"""The chunkwise mLSTM Triton kernels against the plain float64 recurrence (interpreter on a CPU).

Sequence lengths are not multiples of the chunk (S in {1, 7, 40, 97}), so the ragged last chunk and
the masks are exercised; buffers are NaN-poisoned so an unwritten tile shows.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close

from course_lib._triton import kernel_device
from course_lib.xlstm import kernels
from course_lib.xlstm.kernels import mlstm_chunkwise_triton
from course_lib.xlstm.mlstm import mlstm_chunkwise, mlstm_recurrent

FLOAT32_ULP_AT_1 = torch.finfo(torch.float32).eps

# (B, NH, S, DQK, DV, chunk_size)
SHAPES = [(1, 1, 1, 16, 16, 16), (2, 3, 7, 16, 16, 16), (1, 2, 40, 16, 32, 16), (1, 1, 97, 32, 16, 32),
          (2, 1, 33, 8, 24, 64)]


def _inputs(B, NH, S, DQK, DV, dtype=torch.float64, seed=0, states=False):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, shift=0.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) + shift).to(dtype).to(kernel_device())

    args = dict(q=randn(B, NH, S, DQK), k=randn(B, NH, S, DQK), v=randn(B, NH, S, DV), i=randn(B, NH, S),
                f=randn(B, NH, S, shift=3.0))  # forget-gate offset +3, as REFERENCES.md advises
    if states:
        args.update(c_initial=randn(B, NH, DQK, DV), n_initial=randn(B, NH, DQK), m_initial=randn(B, NH, 1))
    return args


def _as64(args):
    return {k: v.double().cpu() for k, v in args.items()}


@pytest.mark.parametrize("states", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mlstm_chunkwise_triton_vs_recurrent_float64(shape, states):
    *dims, L = shape
    args = _inputs(*dims, states=states)
    h, (c, n, m) = mlstm_chunkwise_triton(**args, return_last_states=True, chunk_size=L)
    rh, (rc, rn, rm) = mlstm_recurrent(**_as64(args), return_last_states=True)
    assert h.dtype == torch.float64 and h.shape == rh.shape
    for name, a, b in (("h", h, rh), ("C", c, rc), ("n", n, rn), ("m", m, rm)):
        assert_close(a.cpu(), b, name=name)


def test_mlstm_chunkwise_triton_two_halves_equal_one_pass():
    args = _inputs(1, 2, 50, 16, 16, seed=1)
    full = mlstm_chunkwise_triton(**args, chunk_size=16)
    first = {k: v[:, :, :23] for k, v in args.items()}
    second = {k: v[:, :, 23:] for k, v in args.items()}
    h1, (c, n, m) = mlstm_chunkwise_triton(**first, return_last_states=True, chunk_size=16)
    h2 = mlstm_chunkwise_triton(**second, c_initial=c, n_initial=n, m_initial=m, chunk_size=16)
    assert_close(torch.cat([h1, h2], dim=2).cpu(), full.cpu(), name="h")


def test_mlstm_chunkwise_triton_float32_within_twice_torch_error():
    """The kernel's float32 error against float64 is at most ~2x that of the PyTorch chunkwise form in float32."""
    args = _inputs(2, 2, 97, 32, 32, dtype=torch.float32, seed=2)
    ref = mlstm_recurrent(**_as64(args))
    kernel = mlstm_chunkwise_triton(**args, chunk_size=32)
    plain = mlstm_chunkwise(**args, chunk_size=32)
    assert kernel.dtype == torch.float32
    kernel_err = float((kernel.cpu().double() - ref).abs().max())
    torch_err = float((plain.cpu().double() - ref).abs().max())
    assert kernel_err <= 2 * torch_err + FLOAT32_ULP_AT_1, (kernel_err, torch_err)


def test_mlstm_chunkwise_triton_writes_every_output(monkeypatch):
    real_empty = torch.empty

    def poisoned_empty(*shape, **kw):
        out = real_empty(*shape, **kw)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    monkeypatch.setattr(kernels.torch, "empty", poisoned_empty)
    args = _inputs(1, 2, 37, 16, 40, seed=3)
    h, states = mlstm_chunkwise_triton(**args, return_last_states=True, chunk_size=16)
    monkeypatch.undo()
    for name, t in (("h", h), ("C", states[0]), ("n", states[1]), ("m", states[2])):
        assert bool(torch.isfinite(t).all()), f"{name}: {int((~torch.isfinite(t)).sum())} elements never written"
    assert_close(h.cpu(), mlstm_recurrent(**_as64(args)), name="h")


@pytest.mark.parametrize("chunk_size", [0, 8, 24, 2.0, True])
def test_mlstm_chunkwise_triton_rejects_chunk_sizes_it_cannot_tile(chunk_size):
    with pytest.raises(ValueError, match="power of two"):
        mlstm_chunkwise_triton(**_inputs(1, 1, 5, 16, 16), chunk_size=chunk_size)


def test_mlstm_chunkwise_triton_rejects_mismatched_shapes():
    args = _inputs(1, 1, 5, 16, 16)
    args["i"] = args["i"][..., :4]
    with pytest.raises(ValueError, match="expected q, k"):
        mlstm_chunkwise_triton(**args, chunk_size=16)
