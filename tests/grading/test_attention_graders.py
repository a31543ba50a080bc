"""Module 03 graders: the references pass, other correct versions pass, plausible mistakes are caught."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_rejected_at as _outcome
from helpers import assert_stub_not_attempted, grade_outcome

from course_lib.attention import reference as ref
from course_lib.grading import EXERCISES
from course_lib.grading.core import MISTAKES

MODULE_03 = ["causal_mask", "scaled_dot_product_attention", "split_heads", "merge_heads", "online_softmax_attention"]


def test_module_03_exercises_are_registered():
    assert [e for e in MODULE_03 if e in EXERCISES and EXERCISES[e].module == "03"] == MODULE_03


@pytest.mark.parametrize("exercise_id, fn", [
    ("causal_mask", ref.causal_mask),
    ("scaled_dot_product_attention", ref.scaled_dot_product_attention),
    ("split_heads", ref.split_heads),
    ("merge_heads", ref.merge_heads),
    ("online_softmax_attention", ref.online_softmax_attention),
])
def test_reference_passes(exercise_id, fn):
    passed, stage, text = grade_outcome(exercise_id, fn)
    assert passed, text


@pytest.mark.parametrize("exercise_id", MODULE_03)
def test_unsolved_stub_is_not_attempted(exercise_id):
    # The stub gets the exercise's parameter names so that it passes the signature check.
    params = {"causal_mask": ["Sq", "Sk"], "split_heads": ["x", "num_heads"], "merge_heads": ["x"],
              "scaled_dot_product_attention": ["q", "k", "v", "attn_mask", "is_causal", "scale"],
              "online_softmax_attention": ["q", "k", "v", "block_size", "is_causal", "scale"]}[exercise_id]
    assert_stub_not_attempted(exercise_id, params)


DIAGNOSIS = "your output matches what you get when "
CATALOGUED_03 = ["causal_mask", "scaled_dot_product_attention", "split_heads", "merge_heads",
                 "online_softmax_attention"]


def _named(exercise_id, fn, fragment, stages=("values", "finite")):
    """``fn`` is rejected and the feedback names the catalogued mistake (``fragment`` of its description)."""
    passed, stage, text = grade_outcome(exercise_id, fn)
    assert not passed and stage in stages, text
    named = [line for line in text.splitlines() if DIAGNOSIS in line]
    assert named and fragment in named[0], text
    return text


@pytest.mark.parametrize("wrong", [m for e in CATALOGUED_03 for m in MISTAKES[e]],
                         ids=lambda m: f"{m.exercise_id}:{m.fn.__name__}")
def test_each_catalogued_mistake_is_named(wrong):
    """Every entry of a catalogue, submitted as a learner's function, is named by its own description."""
    _named(wrong.exercise_id, wrong.fn, wrong.description)


@pytest.mark.parametrize("exercise_id", CATALOGUED_03)
def test_every_exercise_has_a_catalogue(exercise_id):
    assert len(MISTAKES[exercise_id]) >= 3


# --------------------------------------------------------------------------------------------
# causal_mask
# --------------------------------------------------------------------------------------------


def causal_mask_by_comparison(Sq, Sk):
    return torch.arange(Sk)[None, :] <= torch.arange(Sq)[:, None]


def causal_mask_looped(Sq, Sk):
    m = torch.zeros(Sq, Sk, dtype=torch.bool)
    for i in range(Sq):
        for j in range(min(i + 1, Sk)):
            m[i, j] = True
    return m


@pytest.mark.parametrize("fn", [causal_mask_by_comparison, causal_mask_looped])
def test_causal_mask_other_correct_versions_pass(fn):
    passed, _, text = grade_outcome("causal_mask", fn)
    assert passed, text


@pytest.mark.parametrize("fn, stage", [
    (lambda Sq, Sk: torch.ones(Sq, Sk, dtype=torch.bool).triu(), "values"),  # the future instead of the past
    (lambda Sq, Sk: ~torch.ones(Sq, Sk, dtype=torch.bool).tril(), "values"),  # inverted meaning
    (lambda Sq, Sk: torch.ones(Sq, Sk, dtype=torch.bool).tril(-1), "values"),  # off by one: no diagonal
    (lambda Sq, Sk: torch.ones(Sq, Sk, dtype=torch.bool).tril(1), "values"),  # off by one: sees the next key
    (lambda Sq, Sk: torch.ones(Sq, Sk, dtype=torch.bool).tril(Sk - Sq), "values"),  # bottom-right aligned
    (lambda Sq, Sk: torch.ones(Sq, Sk).tril(), "dtype"),  # a 0/1 float mask would be *added* to the scores
    (lambda Sq, Sk: torch.ones(Sq, Sk, dtype=torch.bool).tril().tolist(), "types"),
], ids=["triu", "inverted", "tril-1", "tril+1", "bottom-right", "float", "list"])
def test_causal_mask_wrong_versions_rejected(fn, stage):
    _outcome("causal_mask", fn, stage)


@pytest.mark.parametrize("fn, fragment", [
    (lambda Sq, Sk: torch.ones(Sq, Sk, dtype=torch.bool).triu(), "the upper triangle is kept"),
    (lambda Sq, Sk: ~torch.ones(Sq, Sk, dtype=torch.bool).tril(), "the meaning is inverted"),
    (lambda Sq, Sk: torch.ones(Sq, Sk, dtype=torch.bool).tril(-1), "the diagonal is left out"),
    (lambda Sq, Sk: torch.ones(Sq, Sk, dtype=torch.bool).tril(1), "it lets a query see the next key"),
    (lambda Sq, Sk: torch.ones(Sq, Sk, dtype=torch.bool).tril(Sk - Sq), "anchored at the bottom-right corner"),
], ids=["triu", "inverted", "tril-1", "tril+1", "bottom-right"])
def test_causal_mask_mistakes_are_named(fn, fragment):
    _named("causal_mask", fn, fragment)


def test_causal_mask_off_by_one_lists_positions_and_says_what_it_lets_through():
    text = _named("causal_mask", lambda Sq, Sk: torch.ones(Sq, Sk, dtype=torch.bool).tril(1),
                  "the causal mask is off by one: it lets a query see the next key")
    assert "4 of 25 entries wrong; True where it should be False at [0, 1], [1, 2], [2, 3], [3, 4]" in text
    assert "the mask lets a query see later keys: True above the diagonal at 4 places" in text
    assert "rel error" not in text


# --------------------------------------------------------------------------------------------
# scaled_dot_product_attention
# --------------------------------------------------------------------------------------------


def sdpa_looped(q, k, v, attn_mask=None, is_causal=False, scale=None):
    """A differently written correct version: einsum, an explicit bias tensor, torch.where."""
    Sq, D = q.shape[-2:]
    Sk = k.shape[-2]
    scale = D**-0.5 if scale is None else scale
    scores = torch.einsum("...id,...jd->...ij", q, k) * scale
    bias = torch.zeros(Sq, Sk, dtype=q.dtype)
    if is_causal:
        bias = bias.masked_fill(torch.ones(Sq, Sk, dtype=torch.bool).triu(1), -math.inf)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            bias = torch.where(attn_mask, bias, torch.tensor(-math.inf, dtype=q.dtype))
        else:
            bias = bias + attn_mask.type(q.dtype)
    scores = scores + bias
    e = torch.exp(scores - scores.amax(-1, keepdim=True))
    w = e / e.sum(-1, keepdim=True)
    return torch.einsum("...ij,...jd->...id", w, v), w


def _sdpa_wrong(variant):
    def fn(q, k, v, attn_mask=None, is_causal=False, scale=None):
        Sq, D = q.shape[-2:]
        Sk = k.shape[-2]
        scale = 1 / math.sqrt(D) if scale is None else scale
        if variant == "no_scale":
            scale = 1.0
        if variant == "ignores_custom_scale":
            scale = 1 / math.sqrt(D)
        s = q @ k.transpose(-2, -1) * scale
        causal = torch.ones(Sq, Sk, dtype=torch.bool).tril()
        if variant == "causal_off_by_one_no_diagonal":
            causal = torch.ones(Sq, Sk, dtype=torch.bool).tril(-1)
        if variant == "causal_off_by_one_next_key":
            causal = torch.ones(Sq, Sk, dtype=torch.bool).tril(1)
        if variant == "causal_bottom_right":
            causal = torch.ones(Sq, Sk, dtype=torch.bool).tril(Sk - Sq)
        if is_causal and not (variant == "mask_overrides_causal" and attn_mask is not None):
            s = s.masked_fill(~causal, -math.inf)
        mask_after = None
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                if variant == "mask_inverted":
                    s = s.masked_fill(attn_mask, -math.inf)
                elif variant == "mask_after_softmax":
                    mask_after = attn_mask
                else:
                    s = s.masked_fill(~attn_mask, -math.inf)
            elif variant == "float_mask_multiplied":
                s = s * attn_mask.to(q.dtype)
            elif variant == "float_mask_not_cast":
                s = s + attn_mask
            else:
                s = s + attn_mask.to(q.dtype)
        w = torch.softmax(s, dim=-2 if variant == "softmax_wrong_axis" else -1)
        if mask_after is not None:
            w = w * mask_after
        if variant == "weights_detached":
            w = w.detach()
        out = w @ v
        if variant == "returns_out_only":
            return out
        if variant == "weights_transposed":
            return out, w.transpose(-2, -1)
        if variant == "weights_averaged_over_heads":  # nn.MultiheadAttention's default
            return out, w.mean(dim=1)
        if variant == "scales_q_in_place":
            q.mul_(2.0)
        return out, w

    return fn


def test_sdpa_other_correct_version_passes():
    passed, _, text = grade_outcome("scaled_dot_product_attention", sdpa_looped)
    assert passed, text


def test_sdpa_calling_the_course_reference_is_caught_by_the_rules():
    def sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None):
        return ref.scaled_dot_product_attention(q, k, v, attn_mask, is_causal, scale)

    text = _outcome("scaled_dot_product_attention", sdpa, "rules")
    assert "your function used course_lib.attention.reference.scaled_dot_product_attention" in text


@pytest.mark.parametrize("exercise_id, fn", [
    ("causal_mask", lambda Sq, Sk: ref.causal_mask(Sq, Sk)),
    ("split_heads", lambda x, num_heads: ref.split_heads(x, num_heads)),
    ("merge_heads", lambda x: ref.merge_heads(x)),
], ids=["causal_mask", "split_heads", "merge_heads"])
def test_calling_the_course_reference_is_caught_by_the_rules(exercise_id, fn):
    text = _outcome(exercise_id, fn, "rules")
    assert "course_lib.attention is the course's reference implementation" in text


def test_online_softmax_calling_the_course_reference_is_caught_by_the_rules():
    def online(q, k, v, block_size, is_causal=False, scale=None):
        return ref.online_softmax_attention(q, k, v, block_size, is_causal, scale)

    text = _outcome("online_softmax_attention", online, "rules")
    assert "course_lib.attention is the course's reference implementation" in text


@pytest.mark.parametrize("variant, stage", [
    ("no_scale", "values"),
    ("softmax_wrong_axis", "values"),
    ("mask_after_softmax", "values"),
    ("mask_inverted", "values"),
    ("causal_off_by_one_no_diagonal", "finite"),  # query 0 sees no key at all: NaN
    ("causal_off_by_one_next_key", "values"),
    ("causal_bottom_right", "values"),
    ("mask_overrides_causal", "values"),  # with both, only attn_mask is applied
    ("ignores_custom_scale", "values"),
    ("float_mask_multiplied", "finite"),  # -inf times a negative score is +inf
    ("float_mask_not_cast", "runs"),  # float64 weights @ float32 v raises
    ("weights_detached", "gradients"),
    ("returns_out_only", "types"),
    ("weights_transposed", "values"),
    ("weights_averaged_over_heads", "shapes"),
    ("scales_q_in_place", "runs"),
])
def test_sdpa_wrong_versions_rejected(variant, stage):
    _outcome("scaled_dot_product_attention", _sdpa_wrong(variant), stage)


@pytest.mark.parametrize("variant, fragment", [
    ("no_scale", "the scores are not scaled: the factor 1/√D is missing"),
    ("softmax_wrong_axis", "the softmax runs over the queries (dim=-2) instead of over the keys"),
    ("mask_after_softmax", "the bool mask is applied after the softmax"),
    ("mask_inverted", "the bool mask is inverted"),
    ("causal_off_by_one_no_diagonal", "the causal mask is off by one: the diagonal is left out"),
    ("causal_off_by_one_next_key", "the causal mask is off by one: it lets a query see the next key"),
    ("causal_bottom_right", "the causal triangle is anchored at the bottom-right corner"),
    ("mask_overrides_causal", "with attn_mask and is_causal together, only attn_mask is applied"),
    ("ignores_custom_scale", "the scale argument is ignored"),
    ("float_mask_multiplied", "the float mask multiplies the scores"),
    ("weights_transposed", "the weights are returned transposed"),
])
def test_sdpa_mistakes_are_named(variant, fragment):
    _named("scaled_dot_product_attention", _sdpa_wrong(variant), fragment)


def test_sdpa_mask_after_softmax_also_reports_the_row_sums():
    text = _named("scaled_dot_product_attention", _sdpa_wrong("mask_after_softmax"), "the bool mask is applied after")
    assert "rows of your weights sum to between" in text and "not 1" in text


def test_sdpa_weights_transposed_reports_out_right_and_weights_wrong():
    text = _named("scaled_dot_product_attention", _sdpa_wrong("weights_transposed"), "the weights are returned")
    assert "status: out ✓, weights ✗" in text


def sdpa_builtin_out(q, k, v, attn_mask=None, is_causal=False, scale=None):
    """Right numbers, forbidden means: the weights by hand, the output from F.scaled_dot_product_attention."""
    _, w = sdpa_looped(q, k, v, attn_mask, is_causal, scale)
    mask = attn_mask.to(q.dtype) if attn_mask is not None and attn_mask.dtype != torch.bool else attn_mask
    if is_causal and mask is not None:
        causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        mask = (mask & causal) if mask.dtype == torch.bool else mask.masked_fill(~causal, -math.inf)
        is_causal = False
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                                            scale=scale), w


def test_sdpa_builtin_is_caught_by_the_rules():
    text = _outcome("scaled_dot_product_attention", sdpa_builtin_out, "rules")
    assert "your function used torch.nn.functional.scaled_dot_product_attention" in text


def test_sdpa_feedback_names_the_case_and_hides_expected_values():
    text = _outcome("scaled_dot_product_attention", _sdpa_wrong("no_scale"), "values")
    assert "max abs error" in text and "worst at index" in text and "q: (2, 3, 5, 8)" in text


# --------------------------------------------------------------------------------------------
# split_heads / merge_heads
# --------------------------------------------------------------------------------------------


def split_heads_looped(x, num_heads):
    DH = x.shape[-1] // num_heads
    return torch.stack([x[..., h * DH:(h + 1) * DH] for h in range(num_heads)], dim=1)


def merge_heads_cat(x):
    return torch.cat(x.unbind(dim=1), dim=-1)


def test_split_and_merge_other_correct_versions_pass():
    for exercise_id, fn in [("split_heads", split_heads_looped), ("merge_heads", merge_heads_cat),
                            ("split_heads", lambda x, num_heads: x.unflatten(-1, (num_heads, -1)).permute(0, 2, 1, 3)),
                            ("merge_heads", lambda x: x.permute(0, 2, 1, 3).flatten(2))]:
        passed, _, text = grade_outcome(exercise_id, fn)
        assert passed, text


@pytest.mark.parametrize("fn, stage", [
    (lambda x, num_heads: x.reshape(x.shape[0], num_heads, x.shape[1], -1), "values"),  # no transpose
    (lambda x, num_heads: x.reshape(*x.shape[:2], -1, num_heads).permute(0, 3, 1, 2), "values"),  # interleaved
    (lambda x, num_heads: x.reshape(*x.shape[:2], num_heads, -1), "shapes"),  # (B, S, NH, DH)
    (lambda x, num_heads: ref.split_heads(x, num_heads).float(), "dtype"),
    (lambda x, num_heads: ref.split_heads(x, num_heads).detach(), "gradients"),
], ids=["no-transpose", "interleaved", "not-transposed-shape", "float32", "detached"])
def test_split_heads_wrong_versions_rejected(fn, stage):
    _outcome("split_heads", fn, stage)


@pytest.mark.parametrize("fn, stage", [
    (lambda x: x.reshape(x.shape[0], x.shape[2], -1), "values"),  # heads merged without the transpose
    (lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1), "values"),  # features interleaved
    (lambda x: x.transpose(1, 2).flip(2).reshape(x.shape[0], x.shape[2], -1), "values"),  # heads reversed
    (lambda x: x.sum(dim=1), "shapes"),  # heads summed instead of concatenated
    (lambda x: ref.merge_heads(x).float(), "dtype"),
    (lambda x: ref.merge_heads(x.detach()), "gradients"),
], ids=["no-transpose", "interleaved", "reversed", "summed", "float32", "detached"])
def test_merge_heads_wrong_versions_rejected(fn, stage):
    _outcome("merge_heads", fn, stage)


@pytest.mark.parametrize("exercise_id, fn, fragment", [
    ("split_heads", lambda x, num_heads: x.reshape(x.shape[0], num_heads, x.shape[1], -1), "without the transpose"),
    ("split_heads", lambda x, num_heads: x.reshape(*x.shape[:2], -1, num_heads).permute(0, 3, 1, 2), "interleaved"),
    ("merge_heads", lambda x: x.reshape(x.shape[0], x.shape[2], -1), "without transposing back first"),
    ("merge_heads", lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
     "the heads are merged in the wrong order: the features are interleaved"),
    ("merge_heads", lambda x: x.transpose(1, 2).flip(2).reshape(x.shape[0], x.shape[2], -1), "in reverse order"),
], ids=["split no-transpose", "split interleaved", "merge no-transpose", "merge interleaved", "merge reversed"])
def test_split_and_merge_mistakes_are_named(exercise_id, fn, fragment):
    _named(exercise_id, fn, fragment)


# --------------------------------------------------------------------------------------------
# online_softmax_attention
# --------------------------------------------------------------------------------------------


def online_lazy_normalised(q, k, v, block_size, is_causal=False, scale=None):
    """A differently written correct version: keeps the output normalised after every block."""
    Sq, D = q.shape[-2:]
    Sk = k.shape[-2]
    scale = D**-0.5 if scale is None else scale
    m = torch.full(q.shape[:-1], -math.inf, dtype=q.dtype)
    lse = torch.full(q.shape[:-1], -math.inf, dtype=q.dtype)
    o = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for j0 in range(0, Sk, block_size):
        j1 = min(j0 + block_size, Sk)
        s = torch.einsum("...id,...jd->...ij", q, k[..., j0:j1, :]) * scale
        if is_causal:
            s = torch.where(torch.arange(j0, j1)[None, :] <= torch.arange(Sq)[:, None], s, -math.inf)
        m = torch.maximum(m, s.amax(-1))
        blk_lse = m + torch.log(torch.exp(s - m[..., None]).sum(-1))
        new_lse = torch.logaddexp(lse, blk_lse)
        o = (o * torch.exp(lse - new_lse)[..., None]
             + torch.exp(s - new_lse[..., None]) @ v[..., j0:j1, :])
        lse = new_lse
    return o, lse


def _online_wrong(variant):
    def fn(q, k, v, block_size, is_causal=False, scale=None):
        Sq, D = q.shape[-2:]
        Sk = k.shape[-2]
        scale = 1 / math.sqrt(D) if scale is None else scale
        m = torch.full((*q.shape[:-1], 1), -math.inf, dtype=q.dtype)
        if variant == "no_running_max":
            m = torch.zeros((*q.shape[:-1], 1), dtype=q.dtype)
        l = torch.zeros((*q.shape[:-1], 1), dtype=q.dtype)
        acc = torch.zeros((*q.shape[:-1], v.shape[-1]), dtype=q.dtype)
        stop = Sk - block_size + 1 if variant == "drops_ragged_last_block" else Sk
        for j0 in range(0, max(stop, 1), block_size):
            kb, vb = k[..., j0:j0 + block_size, :], v[..., j0:j0 + block_size, :]
            s = q @ kb.transpose(-2, -1) * scale
            if is_causal:
                cols = torch.arange(kb.shape[-2]) + (0 if variant == "causal_block_local_index" else j0)
                s = s.masked_fill(cols[None, :] > torch.arange(Sq)[:, None], -math.inf)
            m_new = m if variant == "no_running_max" else torch.maximum(m, s.amax(-1, keepdim=True))
            alpha = torch.exp(m - m_new)
            p = torch.exp(s - m_new)
            if variant == "sum_not_rescaled":
                l = l + p.sum(-1, keepdim=True)
            else:
                l = alpha * l + p.sum(-1, keepdim=True)
            if variant == "acc_not_rescaled":
                acc = acc + p @ vb
            else:
                acc = alpha * acc + p @ vb
            m = m_new
        lse = m + (l if variant == "lse_without_log" else torch.log(l))
        return acc / l, lse.squeeze(-1)

    return fn


def online_full_softmax(q, k, v, block_size, is_causal=False, scale=None):
    """Right numbers, wrong method: all scores at once, block_size ignored."""
    return ref.scaled_dot_product_attention(q, k, v, is_causal=is_causal, scale=scale)[0], _online_lse(
        q, k, is_causal, scale)


def _online_lse(q, k, is_causal, scale):
    s = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if is_causal:
        s = s.masked_fill(~ref.causal_mask(q.shape[-2], k.shape[-2]), -math.inf)
    return torch.logsumexp(s, dim=-1)


def test_online_softmax_that_holds_all_scores_at_once_is_rejected():
    text = _outcome("online_softmax_attention", online_full_softmax, "properties")
    assert "values for 40 keys of every query at once" in text and "block_size=8" in text


def test_online_softmax_other_correct_version_passes():
    passed, _, text = grade_outcome("online_softmax_attention", online_lazy_normalised)
    assert passed, text


@pytest.mark.parametrize("variant, stage", [
    ("sum_not_rescaled", "values"),
    ("acc_not_rescaled", "values"),
    ("lse_without_log", "values"),
    ("drops_ragged_last_block", "values"),
    ("causal_block_local_index", "values"),
    ("no_running_max", "finite"),  # exp of scores above 88 overflows in float32
])
def test_online_softmax_wrong_versions_rejected(variant, stage):
    _outcome("online_softmax_attention", _online_wrong(variant), stage)


@pytest.mark.parametrize("variant, fragment", [
    ("sum_not_rescaled", "the running sum ℓ is not rescaled"),
    ("acc_not_rescaled", "the accumulated output o is not rescaled"),
    ("lse_without_log", "lse is m + ℓ: the log of the running sum is missing"),
    ("drops_ragged_last_block", "the last, shorter block is dropped"),
    ("causal_block_local_index", "the key index inside the block (j) is compared"),
    ("no_running_max", "there is no running max"),
])
def test_online_softmax_mistakes_are_named(variant, fragment):
    _named("online_softmax_attention", _online_wrong(variant), fragment)


def test_online_softmax_accumulator_not_rescaled_reports_lse_right():
    text = _named("online_softmax_attention", _online_wrong("acc_not_rescaled"), "the accumulated output o")
    assert "status: out ✗, lse ✓" in text



# --------------------------------------------------------------------------------------------
# attention_score_gradients (derivation exercise, graded with the mistake catalogue)
# --------------------------------------------------------------------------------------------

SCORE_GRAD = "attention_score_gradients"


def _score_grad_mistakes():
    from course_lib.grading.core import MISTAKES

    return MISTAKES[SCORE_GRAD]


def score_grad_jacobian(q, k, grad_weights, scale=None):
    # the full Jacobian diag(α) − α αᵀ of every row, applied to u: a differently written correct version
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    a = torch.softmax(torch.einsum("...id,...jd->...ij", q, k) * scale, dim=-1)
    jac = torch.diag_embed(a) - a.unsqueeze(-1) * a.unsqueeze(-2)  # (..., Sq, Sk, Sk), symmetric
    gs = (jac @ grad_weights.unsqueeze(-1)).squeeze(-1)
    return gs, scale * torch.einsum("...ij,...jd->...id", gs, k), scale * torch.einsum("...ij,...id->...jd", gs, q)


def score_grad_by_autograd(q, k, grad_weights, scale=None):
    # right values, but the exercise is to derive them: rejected by the rules
    q, k = q.detach().requires_grad_(True), k.detach().requires_grad_(True)
    with torch.enable_grad():
        s = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale is None else scale)
        s.retain_grad()
        (torch.softmax(s, -1) * grad_weights).sum().backward()
    return s.grad.detach(), q.grad.detach(), k.grad.detach()


def test_score_gradients_reference_and_other_correct_version_pass_without_diagnosis():
    for fn in (ref.attention_score_gradients, score_grad_jacobian):
        passed, _, text = grade_outcome(SCORE_GRAD, fn)
        assert passed, text
        assert "diagnosis" not in text


def test_score_gradients_stub_not_attempted():
    assert_stub_not_attempted(SCORE_GRAD, ["q", "k", "grad_weights", "scale"])


def test_score_gradients_catalogue_has_at_least_four_mistakes():
    assert len(_score_grad_mistakes()) >= 4


@pytest.mark.parametrize("wrong", _score_grad_mistakes(), ids=lambda m: m.fn.__name__)
def test_score_gradients_each_catalogued_mistake_is_rejected_and_named(wrong):
    text = _outcome(SCORE_GRAD, wrong.fn, "values")
    assert "your output matches what you get when " + wrong.description in text


def test_score_gradients_status_names_the_wrong_output():
    def grad_k_doubled(q, k, grad_weights, scale=None):
        gs, gq, gk = ref.attention_score_gradients(q, k, grad_weights, scale)
        return gs, gq, 2 * gk

    text = _outcome(SCORE_GRAD, grad_k_doubled, "values")
    assert "status: grad_scores ✓, grad_q ✓, grad_k ✗" in text


def test_score_gradients_autograd_is_rejected_by_the_rules():
    text = _outcome(SCORE_GRAD, score_grad_by_autograd, "rules")
    assert "derive the gradient" in text


def test_score_gradients_wrong_structure_and_dtype_are_caught():
    _outcome(SCORE_GRAD, lambda q, k, grad_weights, scale=None: ref.attention_score_gradients(
        q, k, grad_weights, scale)[:2], "types")
    _outcome(SCORE_GRAD, lambda q, k, grad_weights, scale=None: tuple(
        t.double() for t in ref.attention_score_gradients(q, k, grad_weights, scale)), "dtype")
