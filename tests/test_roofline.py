"""The traffic model of module 07: FLOPs, bytes, intensity and the tiles a causal flash kernel visits."""

from __future__ import annotations

import math

import matplotlib
import pytest

from course_lib import roofline

matplotlib.use("Agg")


def test_naive_attention_is_memory_bound_and_tiled_attention_is_not():
    # D = 64, S = 4096, bf16: naive I = S·D / (2·(S + D)) = 31.5 FLOP/B; tiled I = S / 2 = 2048 FLOP/B.
    naive = roofline.arithmetic_intensity(4096, 4096, 64, naive=True)
    tiled = roofline.arithmetic_intensity(4096, 4096, 64, naive=False)
    assert naive == pytest.approx(4096 * 64 / (2 * (4096 + 64)))
    assert tiled == pytest.approx(4096 / 2)
    assert naive < roofline.H100_SXM.ridge < tiled


def test_roofline_time_takes_the_larger_bound():
    gpu = roofline.H100_SXM
    assert roofline.roofline_time_s(1e12, 1.0, gpu) == pytest.approx(1e12 / (gpu.bf16_tflops * 1e12))
    assert roofline.roofline_time_s(1.0, 1e12, gpu) == pytest.approx(1e12 / (gpu.hbm_tb_s * 1e12))


@pytest.mark.parametrize("S, B", [(64, 16), (1024, 64), (4096, 128)])
def test_causal_tiles_square_is_a_triangle_number(S, B):
    T = S // B
    assert roofline.causal_tiles(S, S, B, B) == T * (T + 1) // 2


@pytest.mark.parametrize("Sq, Sk, BM, BN", [(10, 12, 4, 4), (97, 63, 16, 16), (7, 40, 16, 8), (40, 7, 8, 16)])
def test_causal_tiles_covers_every_needed_tile_and_skips_some(Sq, Sk, BM, BN):
    """Every tile with an allowed entry (j <= i < Sq, j < Sk) is visited; never more than all tiles."""
    needed = {(i // BM, j // BN) for i in range(Sq) for j in range(min(i + 1, Sk))}
    visits = roofline.causal_tiles(Sq, Sk, BM, BN)
    assert len(needed) <= visits <= math.ceil(Sq / BM) * math.ceil(Sk / BN)


def test_plots_draw():
    assert roofline.plot_roofline().get_xlabel().startswith("arithmetic intensity")
    assert len(roofline.plot_flash_tiles().patches) == 3 * 3


def test_tile_explorer_responds_to_its_sliders():
    view = roofline.tile_explorer(static=False)
    controls = {c.description: c for c in view.widget.children if hasattr(c, "description")}
    assert {"Sq", "Sk", "tile", "causal"} <= set(controls)
    controls["Sq"].value = 20  # moving a slider re-runs the view without error
    assert view.widget.result is None


def test_tiled_kernel_without_reuse_rereads_k_and_v_per_query_tile():
    # bf16, Sq = Sk = S: I = 4 S^2 D / (2 (2 S D + 2 S D T)) = S / (1 + T), T = ceil(S / BLOCK_M) query tiles.
    assert roofline.arithmetic_intensity(4096, 4096, 64, naive=False, block_m=128) == pytest.approx(4096 / 33)
    assert roofline.arithmetic_intensity(1000, 1000, 64, naive=False, block_m=64) == pytest.approx(1000 / 17)
    assert roofline.arithmetic_intensity(4096, 4096, 64, naive=True) < \
        roofline.arithmetic_intensity(4096, 4096, 64, naive=False, block_m=128) < roofline.H100_SXM.ridge


def test_chunkwise_diagram_draws_one_box_pair_per_chunk():
    assert len(roofline.plot_chunkwise_kernels(n_chunks=3).patches) == 6
