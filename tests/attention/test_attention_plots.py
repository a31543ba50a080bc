"""The lecture's figures: they draw what they are given (headless matplotlib, plotly figure objects)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from course_lib.attention import causal_mask, scale_sweep  # noqa: E402
from course_lib.attention.plots import (  # noqa: E402
    attention_heatmap,
    plot_attention_weights,
    plot_cost_vs_length,
    plot_masks,
    plot_scale_sweep,
)


def test_plot_scale_sweep_draws_one_line_per_curve_and_panel():
    dims = [4, 16]
    axes = plot_scale_sweep(dims, scale_sweep(dims, n_keys=8, n_queries=8))
    assert len(axes) == 6 and all(len(ax.lines) == 2 for ax in axes)
    assert "∂L/∂q" in axes[4].get_ylabel()
    plt.close("all")


def test_plot_masks_and_weights():
    axes = plot_masks({"causal": causal_mask(4, 4), "padding": torch.ones(4, 4, dtype=torch.bool)})
    assert [ax.get_title() for ax in axes] == ["causal", "padding"]
    ax = plot_attention_weights(torch.rand(3, 5), ["a", "b", "c"], list("vwxyz"), title="w")
    assert [t.get_text() for t in ax.get_xticklabels()] == list("vwxyz")
    plt.close("all")


def test_attention_heatmap_has_a_trace_per_layer_and_head_with_hover_text():
    weights = [torch.softmax(torch.randn(2, 4, 4), -1), torch.softmax(torch.randn(2, 4, 4), -1)]
    fig = attention_heatmap(weights, ["K1", "v2", "K3", "K1?"])
    assert len(fig.data) == 4
    assert [tr.visible for tr in fig.data] == [True, False, False, False]
    assert "weight" in fig.data[0].hovertemplate and list(fig.data[0].y)[-1] == "3:K1?"
    assert len(fig.layout.updatemenus[0].buttons) == 4
    # layers and heads counted from 1, as in the text and the static figures
    assert [b.label for b in fig.layout.updatemenus[0].buttons][:2] == ["layer 1, head 1", "layer 1, head 2"]


def test_plot_cost_vs_length_is_log_log():
    axes = plot_cost_vs_length([8, 16], {"a": [1e-3, 4e-3]}, {"a": [1e6, 4e6]})
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in axes)
    plt.close("all")


def test_diagrams_draw_boxes_and_arrows():
    from course_lib.attention.plots import draw_attention_diagram, draw_multihead_diagram, draw_transformer_block

    for draw in (draw_attention_diagram, lambda: draw_multihead_diagram(num_heads=4), draw_transformer_block):
        ax = draw()
        assert ax.patches and ax.texts
    texts = [t.get_text() for t in draw_multihead_diagram(num_heads=4).texts]
    assert any(t.startswith("head 4") for t in texts) and not any(t.startswith("head 5") for t in texts)
    plt.close("all")


def test_soft_lookup_matches_a_softmax_and_the_fallback_strip_has_a_panel_per_beta():
    from course_lib.attention.widgets import plot_soft_lookup, plot_soft_lookup_sweep, soft_lookup

    keys = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]], dtype=torch.float64)
    values = torch.tensor([10.0, 20.0, 30.0, 40.0], dtype=torch.float64)
    w, out = soft_lookup(keys, values, 90, 16.0)
    assert torch.allclose(w, torch.softmax(16.0 * keys[:, 0], 0)) and abs(out - float(w @ values)) < 1e-12
    assert soft_lookup(keys, values, 45, 0.0)[1] == 25.0  # β = 0 averages every value
    assert len(plot_soft_lookup_sweep(keys, values, list("NESW"), betas=(0, 1, 4))) == 3
    axes = plot_soft_lookup(keys, values, list("NESW"), 60, 4)
    assert "18.18" in axes[1].get_title()
    plt.close("all")
