"""Module 07 graders: correct Triton kernels pass; kernels with the classic bugs fail where they should.

The kernels run through Triton's interpreter (no GPU needed). Each wrong kernel differs from a
correct one by one plausible mistake: a missing load or store mask, a missing rescale, a loop one tile
short, a float16 accumulator, an unmasked decay matrix, a dropped ragged chunk.
"""

from __future__ import annotations

# isort: off
import course_lib  # noqa: F401  (sets TRITON_INTERPRET before triton is imported: its own helpers are jitted)
import triton
import triton.language as tl

# isort: on
import math

import pytest
from helpers import assert_passes, assert_rejected_at, grade_outcome

from course_lib.grading import EXERCISES
from course_lib.grading.core import MISTAKES
from course_lib.grading.kernels import flash_attention_intensity_reference

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy overflow inside the interpreter

MODULE_07 = ["softmax_rows_kernel", "online_lse_kernel", "mlstm_intra_chunk_kernel", "flash_attention_intensity"]


def test_module_07_exercises_are_registered():
    assert [e.id for e in EXERCISES.values() if e.module == "07"] == MODULE_07


def _named(text: str, exercise_id: str, fragment: str) -> None:
    description = next(m.description for m in MISTAKES[exercise_id] if fragment in m.description)
    assert f"your output matches what you get when {description}" in text, text


# --------------------------------------------------------------------------------------------
# softmax_rows_kernel
# --------------------------------------------------------------------------------------------


@triton.jit
def softmax_ok(X, Y, n_cols, x_stride, y_stride, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(X + r * x_stride + cols, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, 0))
    tl.store(Y + r * y_stride + cols, (e / tl.sum(e, 0)).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def softmax_no_load_mask(X, Y, n_cols, x_stride, y_stride, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(X + r * x_stride + cols).to(tl.float32)
    e = tl.exp(x - tl.max(x, 0))
    tl.store(Y + r * y_stride + cols, (e / tl.sum(e, 0)).to(Y.dtype.element_ty), mask=cols < n_cols)


@triton.jit
def softmax_no_store_mask(X, Y, n_cols, x_stride, y_stride, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    x = tl.load(X + r * x_stride + cols, mask=cols < n_cols, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, 0))
    tl.store(Y + r * y_stride + cols, (e / tl.sum(e, 0)).to(Y.dtype.element_ty))


@triton.jit
def softmax_pad_zero(X, Y, n_cols, x_stride, y_stride, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(X + r * x_stride + cols, mask=mask, other=0.0).to(tl.float32)
    e = tl.exp(x - tl.max(x, 0))
    tl.store(Y + r * y_stride + cols, (e / tl.sum(e, 0)).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def softmax_no_max(X, Y, n_cols, x_stride, y_stride, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(X + r * x_stride + cols, mask=mask, other=-float("inf"))
    e = tl.exp(x)
    tl.store(Y + r * y_stride + cols, (e / tl.sum(e, 0)).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def softmax_wrong_order(X, n_cols, Y, x_stride, y_stride, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    tl.store(Y + r * y_stride + cols, tl.load(X + r * x_stride + cols), mask=cols < n_cols)


@triton.jit
def softmax_x_stride_for_y(X, Y, n_cols, x_stride, y_stride, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(X + r * x_stride + cols, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, 0))
    tl.store(Y + r * x_stride + cols, (e / tl.sum(e, 0)).to(Y.dtype.element_ty), mask=mask)


def test_softmax_rows_kernel_rejects_the_input_stride_used_for_the_output():
    passed, stage, text = grade_outcome("softmax_rows_kernel", softmax_x_stride_for_y)
    assert not passed and stage in ("properties", "finite", "values"), text


def test_softmax_rows_kernel_accepts_a_correct_kernel():
    assert_passes("softmax_rows_kernel", softmax_ok)


def test_softmax_rows_kernel_missing_load_mask_reads_the_guard():
    text = assert_rejected_at("softmax_rows_kernel", softmax_no_load_mask, "finite")
    assert "read a NaN guard cell past the end of a row" in text


def test_softmax_rows_kernel_missing_store_mask_writes_into_the_guard():
    text = assert_rejected_at("softmax_rows_kernel", softmax_no_store_mask, "properties")
    assert "outside Y's rows" in text and "mask=cols < n_cols" in text


def test_softmax_rows_kernel_padding_loaded_as_zero_is_named():
    _named(assert_rejected_at("softmax_rows_kernel", softmax_pad_zero, "values"), "softmax_rows_kernel",
           "loaded as 0")


def test_softmax_rows_kernel_without_the_max_overflows_and_is_named():
    _named(assert_rejected_at("softmax_rows_kernel", softmax_no_max, "finite"), "softmax_rows_kernel",
           "maximum is not subtracted")


def test_softmax_rows_kernel_rejects_plain_functions_and_wrong_parameters():
    assert_rejected_at("softmax_rows_kernel", lambda X, Y, n_cols, x_stride, y_stride, BLOCK: None, "signature")
    text = assert_rejected_at("softmax_rows_kernel", softmax_wrong_order, "signature")
    assert "keep these names and this order" in text


def test_softmax_rows_kernel_stub_is_not_attempted():
    @triton.jit
    def stub(X, Y, n_cols, x_stride, y_stride, BLOCK: tl.constexpr):
        raise NotImplementedError()

    passed, stage, text = grade_outcome("softmax_rows_kernel", stub)
    assert not passed and stage == "runs" and "not attempted yet" in text


# --------------------------------------------------------------------------------------------
# online_lse_kernel
# --------------------------------------------------------------------------------------------


@triton.jit
def lse_ok(X, OUT, n_cols, x_stride, CAUSAL: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    if CAUSAL:
        hi = tl.minimum(n_cols, r + 1)
    else:
        hi = n_cols
    m = tl.full([1], -float("inf"), tl.float32)
    s = tl.zeros([1], tl.float32)
    for start in range(0, hi, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(X + r * x_stride + cols, mask=cols < hi, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, 0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
        m = m_new
    tl.store(OUT + r + tl.arange(0, 1), (m + tl.log(s)).to(OUT.dtype.element_ty))


@triton.jit
def lse_no_rescale(X, OUT, n_cols, x_stride, CAUSAL: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    m = tl.full([1], -float("inf"), tl.float32)
    s = tl.zeros([1], tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(X + r * x_stride + cols, mask=cols < n_cols, other=-float("inf")).to(tl.float32)
        m = tl.maximum(m, tl.max(x, 0))
        s = s + tl.sum(tl.exp(x - m), 0)
    tl.store(OUT + r + tl.arange(0, 1), (m + tl.log(s)).to(OUT.dtype.element_ty))


@triton.jit
def lse_one_tile_short(X, OUT, n_cols, x_stride, CAUSAL: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    m = tl.full([1], -float("inf"), tl.float32)
    s = tl.zeros([1], tl.float32)
    for start in range(0, n_cols - BLOCK, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(X + r * x_stride + cols, mask=cols < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, 0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
        m = m_new
    tl.store(OUT + r + tl.arange(0, 1), (m + tl.log(s)).to(OUT.dtype.element_ty))


@triton.jit
def lse_fp16_accumulator(X, OUT, n_cols, x_stride, CAUSAL: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    m = tl.full([1], -float("inf"), tl.float32)
    s = tl.zeros([1], X.dtype.element_ty)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(X + r * x_stride + cols, mask=cols < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, 0))
        s = (s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)).to(X.dtype.element_ty)
        m = m_new
    tl.store(OUT + r + tl.arange(0, 1), (m + tl.log(s.to(tl.float32))).to(OUT.dtype.element_ty))


@triton.jit
def lse_no_load_mask(X, OUT, n_cols, x_stride, CAUSAL: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    m = tl.full([1], -float("inf"), tl.float32)
    s = tl.zeros([1], tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(X + r * x_stride + cols).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, 0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
        m = m_new
    tl.store(OUT + r + tl.arange(0, 1), (m + tl.log(s)).to(OUT.dtype.element_ty))


@triton.jit
def lse_causal_one_tile_short(X, OUT, n_cols, x_stride, CAUSAL: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    if CAUSAL:
        hi = tl.minimum(n_cols, r + 1)
        stop = r
    else:
        hi = n_cols
        stop = n_cols
    m = tl.full([1], -float("inf"), tl.float32)
    s = tl.zeros([1], tl.float32)
    for start in range(0, stop, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(X + r * x_stride + cols, mask=cols < hi, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, 0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
        m = m_new
    tl.store(OUT + r + tl.arange(0, 1), (m + tl.log(s)).to(OUT.dtype.element_ty))


@triton.jit
def lse_causal_ignored(X, OUT, n_cols, x_stride, CAUSAL: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0)
    m = tl.full([1], -float("inf"), tl.float32)
    s = tl.zeros([1], tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        x = tl.load(X + r * x_stride + cols, mask=cols < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, 0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
        m = m_new
    tl.store(OUT + r + tl.arange(0, 1), (m + tl.log(s)).to(OUT.dtype.element_ty))


def test_online_lse_kernel_causal_loop_one_tile_short_is_named():
    _named(assert_rejected_at("online_lse_kernel", lse_causal_one_tile_short, "finite"), "online_lse_kernel",
           "causal loop stops one tile early")


def test_online_lse_kernel_causal_mask_ignored_is_named():
    _named(assert_rejected_at("online_lse_kernel", lse_causal_ignored, "values"), "online_lse_kernel",
           "causal mask is missing")


def test_online_lse_kernel_accepts_a_correct_kernel():
    assert_passes("online_lse_kernel", lse_ok)


def test_online_lse_kernel_without_rescaling_is_named():
    _named(assert_rejected_at("online_lse_kernel", lse_no_rescale, "values"), "online_lse_kernel", "not rescaled")


def test_online_lse_kernel_one_tile_short_is_named():
    _named(assert_rejected_at("online_lse_kernel", lse_one_tile_short, "values"), "online_lse_kernel",
           "one tile early")


def test_online_lse_kernel_float16_accumulator_fails_on_long_rows():
    _named(assert_rejected_at("online_lse_kernel", lse_fp16_accumulator, "values"), "online_lse_kernel",
           "accumulated in float16")


def test_online_lse_kernel_missing_load_mask_reads_the_guard():
    assert_rejected_at("online_lse_kernel", lse_no_load_mask, "finite")


# --------------------------------------------------------------------------------------------
# mlstm_intra_chunk_kernel
# --------------------------------------------------------------------------------------------


@triton.jit
def intra_ok(Q, K, V, B, I, H, S, D, DV, q_scale, eps, L: tl.constexpr, BLOCK_D: tl.constexpr,
             BLOCK_DV: tl.constexpr):
    c = tl.program_id(0)
    t = c * L + tl.arange(0, L)
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    rows = t < S
    q = tl.load(Q + t[:, None] * D + d[None, :], mask=rows[:, None] & (d[None, :] < D), other=0.0) * q_scale
    k = tl.load(K + t[:, None] * D + d[None, :], mask=rows[:, None] & (d[None, :] < D), other=0.0)
    v = tl.load(V + t[:, None] * DV + dv[None, :], mask=rows[:, None] & (dv[None, :] < DV), other=0.0)
    b = tl.load(B + t, mask=rows, other=0.0)
    i = tl.load(I + t, mask=rows, other=-float("inf"))
    keep = (tl.arange(0, L)[None, :] <= tl.arange(0, L)[:, None]) & rows[None, :]
    log_d = tl.where(keep, b[:, None] - b[None, :] + i[None, :], -float("inf"))
    m = tl.maximum(b, tl.max(log_d, 1))
    s = tl.dot(q, tl.trans(k), input_precision="ieee") * tl.exp(log_d - m[:, None])
    den = tl.maximum(tl.abs(tl.sum(s, 1)), tl.exp(-m)) + eps
    h = tl.dot(s, v, input_precision="ieee") / den[:, None]
    tl.store(H + t[:, None] * DV + dv[None, :], h, mask=rows[:, None] & (dv[None, :] < DV))


@triton.jit
def intra_unmasked(Q, K, V, B, I, H, S, D, DV, q_scale, eps, L: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_DV: tl.constexpr):
    c = tl.program_id(0)
    t = c * L + tl.arange(0, L)
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    rows = t < S
    q = tl.load(Q + t[:, None] * D + d[None, :], mask=rows[:, None] & (d[None, :] < D), other=0.0) * q_scale
    k = tl.load(K + t[:, None] * D + d[None, :], mask=rows[:, None] & (d[None, :] < D), other=0.0)
    v = tl.load(V + t[:, None] * DV + dv[None, :], mask=rows[:, None] & (dv[None, :] < DV), other=0.0)
    b = tl.load(B + t, mask=rows, other=0.0)
    i = tl.load(I + t, mask=rows, other=-float("inf"))
    log_d = tl.where(rows[None, :], b[:, None] - b[None, :] + i[None, :], -float("inf"))
    m = tl.maximum(b, tl.max(log_d, 1))
    s = tl.dot(q, tl.trans(k), input_precision="ieee") * tl.exp(log_d - m[:, None])
    den = tl.maximum(tl.abs(tl.sum(s, 1)), tl.exp(-m)) + eps
    h = tl.dot(s, v, input_precision="ieee") / den[:, None]
    tl.store(H + t[:, None] * DV + dv[None, :], h, mask=rows[:, None] & (dv[None, :] < DV))


@triton.jit
def intra_no_bound(Q, K, V, B, I, H, S, D, DV, q_scale, eps, L: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_DV: tl.constexpr):
    c = tl.program_id(0)
    t = c * L + tl.arange(0, L)
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    rows = t < S
    q = tl.load(Q + t[:, None] * D + d[None, :], mask=rows[:, None] & (d[None, :] < D), other=0.0) * q_scale
    k = tl.load(K + t[:, None] * D + d[None, :], mask=rows[:, None] & (d[None, :] < D), other=0.0)
    v = tl.load(V + t[:, None] * DV + dv[None, :], mask=rows[:, None] & (dv[None, :] < DV), other=0.0)
    b = tl.load(B + t, mask=rows, other=0.0)
    i = tl.load(I + t, mask=rows, other=-float("inf"))
    keep = (tl.arange(0, L)[None, :] <= tl.arange(0, L)[:, None]) & rows[None, :]
    log_d = tl.where(keep, b[:, None] - b[None, :] + i[None, :], -float("inf"))
    m = tl.maximum(b, tl.max(log_d, 1))
    s = tl.dot(q, tl.trans(k), input_precision="ieee") * tl.exp(log_d - m[:, None])
    den = tl.abs(tl.sum(s, 1)) + eps
    h = tl.dot(s, v, input_precision="ieee") / den[:, None]
    tl.store(H + t[:, None] * DV + dv[None, :], h, mask=rows[:, None] & (dv[None, :] < DV))


@triton.jit
def intra_no_row_mask_on_store(Q, K, V, B, I, H, S, D, DV, q_scale, eps, L: tl.constexpr, BLOCK_D: tl.constexpr,
                               BLOCK_DV: tl.constexpr):
    c = tl.program_id(0)
    t = c * L + tl.arange(0, L)
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    rows = t < S
    q = tl.load(Q + t[:, None] * D + d[None, :], mask=rows[:, None] & (d[None, :] < D), other=0.0) * q_scale
    k = tl.load(K + t[:, None] * D + d[None, :], mask=rows[:, None] & (d[None, :] < D), other=0.0)
    v = tl.load(V + t[:, None] * DV + dv[None, :], mask=rows[:, None] & (dv[None, :] < DV), other=0.0)
    b = tl.load(B + t, mask=rows, other=0.0)
    i = tl.load(I + t, mask=rows, other=-float("inf"))
    keep = (tl.arange(0, L)[None, :] <= tl.arange(0, L)[:, None]) & rows[None, :]
    log_d = tl.where(keep, b[:, None] - b[None, :] + i[None, :], -float("inf"))
    m = tl.maximum(b, tl.max(log_d, 1))
    s = tl.dot(q, tl.trans(k), input_precision="ieee") * tl.exp(log_d - m[:, None])
    den = tl.maximum(tl.abs(tl.sum(s, 1)), tl.exp(-m)) + eps
    h = tl.dot(s, v, input_precision="ieee") / den[:, None]
    tl.store(H + t[:, None] * DV + dv[None, :], h, mask=dv[None, :] < DV)


@triton.jit
def intra_full_chunks_only(Q, K, V, B, I, H, S, D, DV, q_scale, eps, L: tl.constexpr, BLOCK_D: tl.constexpr,
                           BLOCK_DV: tl.constexpr):
    c = tl.program_id(0)
    if (c + 1) * L <= S:
        t = c * L + tl.arange(0, L)
        d = tl.arange(0, BLOCK_D)
        dv = tl.arange(0, BLOCK_DV)
        q = tl.load(Q + t[:, None] * D + d[None, :], mask=d[None, :] < D, other=0.0) * q_scale
        k = tl.load(K + t[:, None] * D + d[None, :], mask=d[None, :] < D, other=0.0)
        v = tl.load(V + t[:, None] * DV + dv[None, :], mask=dv[None, :] < DV, other=0.0)
        b = tl.load(B + t)
        i = tl.load(I + t)
        keep = tl.arange(0, L)[None, :] <= tl.arange(0, L)[:, None]
        log_d = tl.where(keep, b[:, None] - b[None, :] + i[None, :], -float("inf"))
        m = tl.maximum(b, tl.max(log_d, 1))
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * tl.exp(log_d - m[:, None])
        den = tl.maximum(tl.abs(tl.sum(s, 1)), tl.exp(-m)) + eps
        h = tl.dot(s, v, input_precision="ieee") / den[:, None]
        tl.store(H + t[:, None] * DV + dv[None, :], h, mask=dv[None, :] < DV)


def test_mlstm_intra_chunk_kernel_accepts_a_correct_kernel():
    assert_passes("mlstm_intra_chunk_kernel", intra_ok)


def test_mlstm_intra_chunk_kernel_unmasked_decay_is_named():
    _named(assert_rejected_at("mlstm_intra_chunk_kernel", intra_unmasked, "values"), "mlstm_intra_chunk_kernel",
           "not masked above the diagonal")


def test_mlstm_intra_chunk_kernel_missing_bound_is_named():
    _named(assert_rejected_at("mlstm_intra_chunk_kernel", intra_no_bound, "values"), "mlstm_intra_chunk_kernel",
           "lower bound")


def test_mlstm_intra_chunk_kernel_store_without_row_mask_writes_past_h():
    text = assert_rejected_at("mlstm_intra_chunk_kernel", intra_no_row_mask_on_store, "properties")
    assert "past the last row of H" in text


def test_mlstm_intra_chunk_kernel_dropped_ragged_chunk_is_named():
    _named(assert_rejected_at("mlstm_intra_chunk_kernel", intra_full_chunks_only, "finite"),
           "mlstm_intra_chunk_kernel", "shorter chunk is skipped")


@pytest.mark.parametrize("exercise_id", MODULE_07)
def test_every_kernel_catalogue_has_at_least_three_mistakes(exercise_id):
    assert len(MISTAKES[exercise_id]) >= 3


# --------------------------------------------------------------------------------------------
# flash_attention_intensity
# --------------------------------------------------------------------------------------------


def test_flash_attention_intensity_accepts_correct_derivations():
    assert_passes("flash_attention_intensity", lambda S, D, bytes_per_element, BLOCK_M: (4 * S * S * D) / (
        (2 * S * D + 2 * S * D * math.ceil(S / BLOCK_M)) * bytes_per_element))
    assert_passes("flash_attention_intensity", lambda S, D, bytes_per_element, BLOCK_M: 2 * S / (
        bytes_per_element * (1 + -(-S // BLOCK_M))))


@pytest.mark.parametrize("wrong", MISTAKES["flash_attention_intensity"], ids=lambda m: m.fn.__name__)
def test_flash_attention_intensity_names_each_catalogued_mistake(wrong):
    def learner(S, D, bytes_per_element, BLOCK_M):
        try:
            return float(wrong.fn(S, D, bytes_per_element, BLOCK_M))
        except ValueError:  # the floor/ceiling mistake agrees with the answer when BLOCK_M divides S
            return float(flash_attention_intensity_reference(S, D, bytes_per_element, BLOCK_M))

    text = assert_rejected_at("flash_attention_intensity", learner, "values")
    assert f"your output matches what you get when {wrong.description}" in text


def test_flash_attention_intensity_rejects_a_string():
    assert_rejected_at("flash_attention_intensity", lambda S, D, bytes_per_element, BLOCK_M: "124", "types")
