"""Module 06 figures draw without error and read their numbers off the objects they are given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib.xlstm import MLSTMBlock, XLSTMStack  # noqa: E402
from course_lib.xlstm import mlstm_plots as P  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _texts(ax):
    return " ".join(t.get_text() for t in ax.texts) + " " + ax.get_title()


def test_block_diagram_shows_the_blocks_parameter_count():
    block = MLSTMBlock(16, num_heads=2)
    ax = P.draw_mlstm_block(block)
    total = sum(p.numel() for p in block.parameters())
    assert f"{total} parameters" in ax.get_title()
    assert "2 heads\n× 16" in _texts(ax)


def test_stack_diagram_names_every_block():
    stack = XLSTMStack(16, "msm", num_heads=2)
    text = _texts(P.draw_xlstm_stack(stack))
    assert text.count("MLSTMBlock") == 2 and text.count("SLSTMBlock") == 1 and "xLSTM[2:1]" in text


def test_chunkwise_diagram_colours_every_causal_cell_once():
    ax = P.draw_chunkwise(S=7, chunk_size=3)
    cells = [p for p in ax.patches if abs(p.get_width() - 6.0 / 7) < 1e-9]  # the grid is 6 units wide
    assert len(cells) == 7 * 8 // 2  # every (t, s) with s <= t, nothing above the diagonal


def test_other_figures_draw():
    g = torch.Generator().manual_seed(0)
    P.plot_matrix_memory()
    P.plot_decay_matrix(torch.randn(8, generator=g), torch.randn(8, generator=g) + 3)
    rows = [{"form": "parallel", "S": s, "seconds": 1e-6 * s * s, "peak_bytes": 4 * s * s} for s in (8, 16, 32)]
    axes = P.plot_mlstm_cost(rows)
    assert "S^{2.00}" in axes[0].get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError):
        P.plot_decay_matrix(torch.zeros(2, 3), torch.zeros(2, 3))
