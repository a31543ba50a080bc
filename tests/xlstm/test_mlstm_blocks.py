"""xLSTM blocks: the mLSTM block's structure, causality and form-independence; stacks mixing mLSTM and sLSTM."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close

from course_lib.xlstm.blocks import (
    CausalConv1d,
    MLSTMBlock,
    XLSTMStack,
    XLSTMTokenModel,
    parameter_count,
    xlstm_pattern,
)
from course_lib.xlstm.slstm import SLSTMBlock


def _x(B=2, S=9, E=8, seed=0):
    return torch.randn(B, S, E, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_mlstm_block_shape_and_dtype():
    torch.manual_seed(0)
    block = MLSTMBlock(8, num_heads=2).double()
    y = block(_x())
    assert y.shape == (2, 9, 8) and y.dtype == torch.float64 and torch.isfinite(y).all()


def test_mlstm_block_same_output_for_every_form():
    torch.manual_seed(0)
    block = MLSTMBlock(8, num_heads=2, chunk_size=4).double()
    x = _x(S=11)
    outs = {}
    for form in ("recurrent", "parallel", "chunkwise"):
        block.form = form
        outs[form] = block(x)
    assert_close(outs["chunkwise"], outs["recurrent"], atol=1e-12, rtol=1e-10, name="chunkwise")
    assert_close(outs["parallel"], outs["recurrent"], atol=1e-6, rtol=1e-6, name="parallel")  # eps-level


@pytest.mark.parametrize("make", [lambda: MLSTMBlock(8, num_heads=2), lambda: XLSTMStack(8, "ms", num_heads=2)],
                         ids=["mlstm-block", "xlstm-1-1"])
def test_blocks_are_causal(make):
    torch.manual_seed(0)
    block = make().double()
    x = _x(S=10)
    x2 = x.clone()
    x2[:, 6:] = _x(S=4, seed=1)
    with torch.no_grad():
        y, y2 = block(x), block(x2)
    assert float((y[:, :6] - y2[:, :6]).abs().max()) < 1e-12
    assert float((y[:, 6:] - y2[:, 6:]).abs().max()) > 1e-6


def test_causal_conv_sees_only_the_last_kernel_size_steps():
    conv = CausalConv1d(3, kernel_size=4).double()
    x = _x(B=1, S=10, E=3)
    x2 = x.clone()
    x2[:, 2] += 1.0
    changed = (conv(x2) - conv(x)).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [False, False, True, True, True, True, False, False, False, False]


def test_mlstm_block_parameter_count_matches_the_formula():
    E, NH, K = 16, 4, 4
    inner = 2 * E
    block = MLSTMBlock(E, num_heads=NH, conv_kernel=K)
    expected = (2 * E                      # LayerNorm
                + E * 2 * inner + 2 * inner  # up-projection
                + inner * K + inner          # depthwise causal conv
                + 3 * (inner * inner + inner)  # q, k, v
                + 2 * (3 * inner * NH + NH)  # input and forget gates
                + 2 * inner + inner          # group norm, skip
                + inner * E + E)             # down-projection
    assert parameter_count(block) == expected


def test_mlstm_block_gate_initialisation():
    block = MLSTMBlock(8, num_heads=4)
    assert torch.equal(block.fgate.bias.detach(), torch.linspace(3.0, 6.0, 4))
    assert not block.igate.weight.detach().any() and not block.fgate.weight.detach().any()


def test_mlstm_block_gradients_reach_every_parameter():
    torch.manual_seed(0)
    block = MLSTMBlock(8, num_heads=2)
    block(_x().float()).square().sum().backward()
    missing = [n for n, p in block.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@pytest.mark.parametrize("kwargs, match", [
    (dict(d_model=8, num_heads=3), "divisible"),
    (dict(d_model=8, num_heads=2, form="fast"), "form"),
])
def test_mlstm_block_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLSTMBlock(**kwargs)


def test_xlstm_pattern():
    assert xlstm_pattern(1, 1, 2) == "ms"
    assert xlstm_pattern(7, 1, 8) == "mmmmmmms"
    assert xlstm_pattern(1, 0, 3) == "mmm"
    with pytest.raises(ValueError):
        xlstm_pattern(1, 1, 3)


def test_xlstm_stack_builds_the_blocks_in_order():
    stack = XLSTMStack(8, "msm", num_heads=2)
    assert [type(b) for b in stack.blocks] == [MLSTMBlock, SLSTMBlock, MLSTMBlock]
    with pytest.raises(ValueError, match="blocks"):
        XLSTMStack(8, "mx")


def test_xlstm_token_model_logits_shape():
    torch.manual_seed(0)
    model = XLSTMTokenModel(vocab_size=12, n_out=5, d_model=16, blocks="ms", num_heads=2)
    tokens = torch.randint(0, 12, (3, 7))
    assert model(tokens).shape == (3, 7, 5)
