"""Module 03: scaled dot-product attention, its blocked (online-softmax) form, and attention layers.

``reference`` holds the readable PyTorch code; ``layers`` multi-head attention and a tiny
transformer; ``plots`` the lecture's figures and the interactive weight view; ``kernels`` the
flash-attention Triton kernels (``flash_attention``, imported on first use because Triton is
Linux-only).
"""

from course_lib.attention.layers import (
    LSTMTokenModel,
    MultiHeadAttention,
    TinyTransformer,
    TransformerBlock,
    count_parameters,
)
from course_lib.attention.reference import (
    attention_score_gradients,
    attention_weights_bytes,
    causal_mask,
    merge_heads,
    online_softmax_attention,
    scale_sweep,
    scaled_dot_product_attention,
    softmax_stats,
    split_heads,
)


def __getattr__(name: str):
    if name == "flash_attention":
        from course_lib.attention.kernels import flash_attention

        return flash_attention
    raise AttributeError(f"module 'course_lib.attention' has no attribute {name!r}")


__all__ = [
    "LSTMTokenModel",
    "MultiHeadAttention",
    "TinyTransformer",
    "TransformerBlock",
    "attention_score_gradients",
    "attention_weights_bytes",
    "causal_mask",
    "count_parameters",
    "flash_attention",
    "merge_heads",
    "online_softmax_attention",
    "scale_sweep",
    "scaled_dot_product_attention",
    "softmax_stats",
    "split_heads",
]
