"""xLSTM: the sLSTM (exponential gating, memory mixing) and the mLSTM (a matrix memory).

Readable PyTorch references of every form, side by side with one signature per family; see
``slstm.py`` and ``mlstm.py``; ``kernels.py`` holds the chunkwise mLSTM forward as Triton kernels
(``mlstm_chunkwise_triton``, imported on first use because Triton is Linux-only).
"""

from course_lib.xlstm.blocks import (
    MLSTMBlock,
    XLSTMStack,
    XLSTMTokenModel,
    xlstm_pattern,
)
from course_lib.xlstm.mlstm import (
    MLSTM_FORMS,
    log_decay_matrix,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_parallel_stopgrad,
    mlstm_recurrent,
    mlstm_step,
)
from course_lib.xlstm.slstm import (
    RecurrentClassifier,
    SLSTMBlock,
    SLSTMLayer,
    SLSTMTokenModel,
    headwise_recurrence,
    initial_state,
    log_forget_gate,
    lstm_headwise,
    lstm_step_headwise,
    slstm,
    slstm_step,
    slstm_unstabilised,
    stabilise,
)


def __getattr__(name: str):
    if name == "mlstm_chunkwise_triton":
        from course_lib.xlstm.kernels import mlstm_chunkwise_triton

        return mlstm_chunkwise_triton
    raise AttributeError(f"module 'course_lib.xlstm' has no attribute {name!r}")


__all__ = [
    "MLSTMBlock",
    "XLSTMStack",
    "XLSTMTokenModel",
    "xlstm_pattern",
    "MLSTM_FORMS",
    "log_decay_matrix",
    "mlstm_chunkwise",
    "mlstm_chunkwise_triton",
    "mlstm_parallel",
    "mlstm_parallel_stopgrad",
    "mlstm_recurrent",
    "mlstm_step",
    "RecurrentClassifier",
    "SLSTMBlock",
    "SLSTMLayer",
    "SLSTMTokenModel",
    "headwise_recurrence",
    "initial_state",
    "log_forget_gate",
    "lstm_headwise",
    "lstm_step_headwise",
    "slstm",
    "slstm_step",
    "slstm_unstabilised",
    "stabilise",
]
