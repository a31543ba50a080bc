"""Hopfield layers, the multiple-instance task, the experiments, the Energy Transformer, images, plots."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from helpers import assert_close  # noqa: E402

from course_lib.hopfield import hopfield_retrieve, plots  # noqa: E402
from course_lib.hopfield.energy_transformer import et_descent, et_energy, et_example, layer_norm  # noqa: E402
from course_lib.hopfield.experiments import (  # noqa: E402
    beta_regimes,
    classical_capacity_curve,
    corrupt,
    energy_descent_check,
    flip_bits,
    gaussian_memory,
    head_regimes,
    random_patterns,
    retrieval_comparison,
)
from course_lib.hopfield.images import SHAPES, binary_images, corrupt_images  # noqa: E402
from course_lib.hopfield.layers import BagClassifier, HopfieldLookup, HopfieldPooling  # noqa: E402
from course_lib.tasks.mil import mil_bags  # noqa: E402

# ---------------------------------------------------------------------------------------------------
# Layers


def test_hopfield_pooling_vs_explicit_formula_and_mask():
    torch.manual_seed(0)
    pool = HopfieldPooling(6, d_k=4, d_out=5).double()
    Y = torch.randn(3, 7, 6, dtype=torch.float64)
    Z, w = pool(Y, return_weights=True)
    K = Y @ pool.W_K.weight.T
    V = K @ pool.W_V.weight.T
    expected_w = torch.softmax(pool.beta * pool.query @ K.transpose(-2, -1), dim=-1)  # (3, 1, 7)
    assert_close(w, expected_w)
    assert_close(Z, (expected_w @ V).squeeze(1))
    assert Z.shape == (3, 5) and pool.beta == 1 / math.sqrt(4)
    # padded elements get no weight and do not change the result
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[:, 5:] = False
    Y2 = Y.clone()
    Y2[:, 5:] = 100.0
    assert_close(pool(Y, mask=mask), pool(Y2, mask=mask))
    assert_close(pool(Y, mask=mask), pool(Y[:, :5]))


def test_hopfield_lookup_is_iterated_retrieval_from_learned_patterns():
    torch.manual_seed(1)
    layer = HopfieldLookup(4, n_patterns=6, d_k=4, d_out=4, beta=0.8, n_steps=3).double()
    with torch.no_grad():
        layer.W_Q.weight.copy_(torch.eye(4))
        layer.W_V.weight.copy_(torch.eye(4))
    R = torch.randn(2, 5, 4, dtype=torch.float64)
    out, w = layer(R, return_weights=True)
    expected, expected_w = hopfield_retrieve(R, layer.patterns, 0.8, n_steps=3, return_weights=True)
    assert_close(out, expected)
    assert_close(w, expected_w)
    out.sum().backward()
    assert layer.patterns.grad is not None
    with pytest.raises(ValueError):
        HopfieldLookup(4, 6, n_steps=0)


def test_bag_classifier_shapes_and_bad_pooling():
    bags, labels = mil_bags(5, bag_size=9, d=4, generator=torch.Generator().manual_seed(0))
    for pooling in ("hopfield", "mean", "max"):
        assert BagClassifier(4, pooling, hidden=8)(bags).shape == (5,)
    with pytest.raises(ValueError):
        BagClassifier(4, "sum")


# ---------------------------------------------------------------------------------------------------
# Experiments


def test_flip_bits_and_corrupt():
    X = torch.ones(50, 20, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    assert bool(((flip_bits(X, 4, g) < 0).sum(-1) == 4).all())
    assert bool(((corrupt(X, 0.1, g, exact=True) < 0).sum(-1) == 2).all())
    frac = float((corrupt(X, 0.1, g) < 0).double().mean())
    assert 0.05 < frac < 0.15


def test_retrieval_comparison_modern_beats_classical_at_many_patterns():
    rates = retrieval_comparison(d=32, Ns=(4, 64), n_queries=60, seed=0)
    assert set(rates) == {"N", "classical", "dense n=3", "modern"}
    assert rates["classical"][1] == 0.0  # 64 patterns in 32 dimensions: far beyond 0.14 d
    assert rates["modern"][1] > 0.8
    assert rates["dense n=3"][0] >= rates["classical"][0] - 0.1


def test_retrieval_comparison_nearest_neighbour_bound_and_extra_beta():
    plain = retrieval_comparison(d=16, Ns=(8, 512), n_queries=100, flip=0.15, seed=1)
    rates = retrieval_comparison(d=16, Ns=(8, 512), n_queries=100, flip=0.15, seed=1, extra_betas=(50.0,),
                                 nearest=True)
    assert list(rates) == ["N", "classical", "dense n=3", "modern", "modern β=50", "nearest neighbour"]
    assert all(rates[k] == v for k, v in plain.items())  # the options do not change the random draws
    # the bound, counted by brute force: the own pattern is strictly the closest (largest overlap)
    gen = torch.Generator().manual_seed(1)
    for j, N in enumerate((8, 512)):
        X = random_patterns(N, 16, gen)
        index = torch.randint(0, N, (100,), generator=gen)
        query = corrupt(X[index], 0.15, gen)
        hits = 0
        for q, i in zip(query, index, strict=True):
            overlaps = X @ q  # an exact copy of the own pattern (likely among 512 in 16 dims) is no rival
            hits += int(all(overlaps[i] > overlaps[m] for m in range(N) if not torch.equal(X[m], X[i])))
        assert rates["nearest neighbour"][j] == hits / 100
    assert rates["nearest neighbour"][1] < 1.0  # 512 patterns in 16 dimensions: some queries are lost to all
    # a nearly hard max reaches the bound, and beta = 1 stays at or below it
    assert rates["modern β=50"] == rates["nearest neighbour"]
    assert all(m <= b for m, b in zip(rates["modern"], rates["nearest neighbour"], strict=True))


def test_classical_capacity_curve_falls_with_load():
    curve = classical_capacity_curve(d=60, loads=(0.05, 0.4), n_sets=1, seed=0)
    assert curve["retrieved"][0] > 0.9 and curve["retrieved"][1] < 0.5
    assert curve["N"] == [3, 24]


def test_beta_regimes_small_beta_averages_large_beta_retrieves():
    X, query, target = gaussian_memory(seed=0)
    table = beta_regimes(X, query, target, betas=(1e-4, 10.0))
    assert table["to_mean"][0] < 0.01 and table["n_eff"][0] > 60
    assert table["to_target"][1] < 1e-6 and table["k90"][1] == 1


def test_energy_descent_check_reports_round_off_only():
    result = energy_descent_check(n_starts=50, n_steps=3)
    assert result["max_increase"] <= 1e-12 * result["max_energy"]
    assert result["transitions"] == 4 * 50 * 3


def test_head_regimes_on_synthetic_heads():
    S = 12
    uniform = torch.ones(S, S).tril()
    uniform = uniform / uniform.sum(-1, keepdim=True)
    one_hot = torch.eye(S)
    two = torch.zeros(S, S)
    two[:, 0] = 0.2
    two[torch.arange(S), torch.arange(S)] = 0.8
    two[0, 0] = 1.0
    third = torch.zeros(S, S)
    for i in range(S):
        third[i, : max(1, (i + 1) // 3)] = 1.0
    third = third / third.sum(-1, keepdim=True)
    w = torch.stack([uniform, one_hot, third])[None]  # (1, 3, S, S)
    rows = head_regimes([w], min_keys=8)
    assert [r["class"] for r in rows] == ["global average", "single pattern", "metastable"]
    assert rows[0]["layer"] == 1 and rows[2]["head"] == 3


# ---------------------------------------------------------------------------------------------------
# Energy Transformer


def test_et_energy_vs_loop_and_descent_decreases():
    x, W_Q, W_K, Xi = et_example(S=5, D=6, H=2, Y=3, M=4, seed=0)
    g = layer_norm(x)
    beta = 0.7
    e_att = 0.0
    for h in range(2):
        q, k = g @ W_Q[h], g @ W_K[h]
        for c in range(5):
            e_att -= math.log(sum(math.exp(beta * float(k[b] @ q[c])) for b in range(5) if b != c)) / beta
    e_hn = -0.5 * float(torch.relu(g @ Xi.T).pow(2).sum())
    assert abs(float(et_energy(g, W_Q, W_K, Xi, beta)) - (e_att + e_hn)) < 1e-10
    assert_close(layer_norm(x), F.layer_norm(x, (6,)))
    _, energies = et_descent(x, W_Q, W_K, Xi, beta=beta, step=0.05, n_steps=30)
    assert len(energies) == 31
    assert all(b <= a + 1e-12 for a, b in zip(energies, energies[1:], strict=False))
    assert energies[-1] < energies[0]


# ---------------------------------------------------------------------------------------------------
# Images


def test_binary_images_and_corruption():
    names, images = binary_images(16)
    assert names == list(SHAPES) and images.shape == (len(SHAPES), 16, 16)
    assert set(images.unique().tolist()) == {-1.0, 1.0}
    flat = images.flatten(1)
    assert len({tuple(r.tolist()) for r in flat}) == len(SHAPES)
    g = torch.Generator().manual_seed(0)
    masked = corrupt_images(images, "mask", 0.5, g)
    assert torch.equal(masked[:, :8], images[:, :8]) and bool((masked[:, 8:] == 0).all())
    flipped = corrupt_images(images, "flip", 0.2, g)
    assert 0.1 < float((flipped != images).double().mean()) < 0.3
    with pytest.raises(ValueError):
        binary_images(names=("moon",))
    with pytest.raises(ValueError):
        corrupt_images(images, "blur", 0.1, g)


# ---------------------------------------------------------------------------------------------------
# Plots (headless): they draw what they are given


def test_plots_draw():
    X = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-1.5, -1.5]], dtype=torch.float64)
    ax = plots.plot_energy_landscape(X, 2.0, starts=torch.tensor([[0.5, 0.5]]), n_steps=2)
    assert len(ax.lines) >= 3
    rates = {"N": [4, 16], "classical": [1.0, 0.0], "modern": [1.0, 1.0]}
    ax = plots.plot_capacity(rates, spread={"modern": [0.0, 0.1]})
    assert len(ax.lines) == 2
    plots.plot_classical_capacity({"load": [0.1, 0.2], "retrieved": [1.0, 0.3], "bit_error": [0.0, 0.1]})
    names, images = binary_images(16, names=("ring", "disc", "plus"))
    axes = plots.plot_image_grid({"stored": images, "retrieved": images}, col_titles=names)
    assert len(axes) == 2
    fig = plots.plot_beta_panels(images, images[0], [0.001, 1.0], names=names)
    assert "N_eff" in fig.axes[0].get_title()
    X, q, t = gaussian_memory(seed=0)
    plots.plot_regimes(beta_regimes(X, q, t, betas=(0.01, 1.0)))
    rows = [{"layer": 1, "head": 1, "median_k": 5.0, "median_fraction": 0.6, "class": "global average"}]
    plots.plot_head_regimes(rows)
    plots.plot_energy_curve([3.0, 2.0, 1.5])
    plots.draw_update_as_attention()
    plt.close("all")
