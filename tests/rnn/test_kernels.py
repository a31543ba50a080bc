"""The fused Triton RNN cell against the float64 reference (through the interpreter on a CPU)."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close

from course_lib._triton import kernel_device
from course_lib.rnn import rnn_cell
from course_lib.rnn.kernels import rnn_cell_triton

NONLINEARITIES = ["tanh", "relu"]
# B*H in {1, 7, 63, 97, 300}: none a multiple of the block sizes used below, so the mask matters.
SHAPES = [(1, 1), (1, 7), (7, 9), (1, 97), (3, 100)]
BLOCKS = [16, 256]
FLOAT32_ULP_AT_1 = torch.finfo(torch.float32).eps


def _inputs(B, H, I=5, dtype=torch.float64, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape, s=1.0):
        return (s * torch.randn(*shape, generator=gen, dtype=torch.float64)).to(dtype).to(kernel_device())

    return dict(x=randn(B, I, s=scale), h=randn(B, H, s=scale), weight_ih=randn(H, I, s=I**-0.5),
                weight_hh=randn(H, H, s=H**-0.5), bias_ih=randn(H, s=0.3), bias_hh=randn(H, s=0.3))


def _as64(args):
    return {k: v.double().cpu() for k, v in args.items()}


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("B, H", SHAPES)
def test_rnn_cell_triton_vs_reference_float64(B, H, nonlinearity, block):
    args = _inputs(B, H)
    out = rnn_cell_triton(**args, nonlinearity=nonlinearity, block=block)
    assert out.shape == (B, H) and out.dtype == torch.float64
    assert_close(out.cpu(), rnn_cell(**_as64(args), nonlinearity=nonlinearity), name="h_new")


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("B, H", SHAPES)
def test_rnn_cell_triton_float32_within_twice_torch_error(B, H, nonlinearity):
    """The kernel's float32 error against float64 is at most ~2x that of plain PyTorch in float32."""
    args = _inputs(B, H, dtype=torch.float32, seed=1, scale=2.0)
    ref64 = rnn_cell(**_as64(args), nonlinearity=nonlinearity)
    kernel = rnn_cell_triton(**args, nonlinearity=nonlinearity, block=16)
    plain = rnn_cell(**args, nonlinearity=nonlinearity)
    assert kernel.dtype == torch.float32
    kernel_err = float((kernel.cpu().double() - ref64).abs().max())
    torch_err = float((plain.cpu().double() - ref64).abs().max())
    # One float32 ulp at 1 of slack: torch's error can be exactly 0 on a tiny input.
    assert kernel_err <= 2 * torch_err + FLOAT32_ULP_AT_1, (kernel_err, torch_err)


@pytest.mark.parametrize("B, H", SHAPES)
def test_rnn_cell_triton_writes_every_output_element(B, H, monkeypatch):
    """Poison the output buffer with NaN: any element the kernel's mask forgets stays NaN."""
    real_empty_like = torch.empty_like
    poisoned = []

    def poisoned_empty_like(t, *a, **kw):
        out = real_empty_like(t, *a, **kw)
        poisoned.append(out.shape)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    monkeypatch.setattr(torch, "empty_like", poisoned_empty_like)
    args = _inputs(B, H, seed=2)
    out = rnn_cell_triton(**args, block=16)
    monkeypatch.undo()
    assert (B, H) in poisoned, "the output buffer was not allocated with torch.empty_like"
    assert bool(torch.isfinite(out).all()), f"{int((~torch.isfinite(out)).sum())} elements never written"
    assert_close(out.cpu(), rnn_cell(**_as64(args)), name="h_new")


@pytest.mark.parametrize("missing", ["bias_ih", "bias_hh", "both"])
def test_rnn_cell_triton_without_biases(missing):
    args = _inputs(3, 7, seed=3)
    for key in (["bias_ih", "bias_hh"] if missing == "both" else [missing]):
        args[key] = None
    ref_args = {k: (None if v is None else v.double().cpu()) for k, v in args.items()}
    assert_close(rnn_cell_triton(**args).cpu(), rnn_cell(**ref_args), name="h_new")


def test_rnn_cell_triton_accepts_strided_views():
    args = _inputs(4, 6, I=5, seed=4)
    wide = torch.randn(4, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    args["x"] = wide.to(kernel_device())[:, ::2]  # (4, 5), stride 2 along the features
    args["h"] = args["h"].T.contiguous().T  # (4, 6), column-major
    assert not args["x"].is_contiguous() and not args["h"].is_contiguous()
    assert_close(rnn_cell_triton(**args).cpu(), rnn_cell(**_as64(args)), name="h_new")


@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")  # the interpreter's numpy exp
def test_rnn_cell_triton_tanh_saturates_without_overflow():
    """tanh as 2*sigmoid(2a) - 1 stays finite for huge pre-activations."""
    args = _inputs(2, 5, seed=5, scale=1e4)
    out = rnn_cell_triton(**args)
    assert bool(torch.isfinite(out).all())
    assert_close(out.cpu(), rnn_cell(**_as64(args)), name="h_new")


def test_rnn_cell_triton_rejects_unknown_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity"):
        rnn_cell_triton(**_inputs(1, 2), nonlinearity="gelu")
