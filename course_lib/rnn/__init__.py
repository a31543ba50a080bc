"""Module 01: the vanilla RNN and backpropagation through time.

``reference`` holds the readable PyTorch code; ``kernels`` a small fused Triton kernel for the cell.
"""

from course_lib.rnn.reference import (
    gradient_norms_over_lag,
    largest_singular_value,
    matrix_power_norms,
    nonnormal_example,
    rnn,
    rnn_bptt,
    rnn_cell,
    rnn_step_jacobian,
    scale_to_spectral_radius,
    spectral_radius,
    state_gradient_norms,
)

__all__ = ["gradient_norms_over_lag", "largest_singular_value", "matrix_power_norms", "nonnormal_example", "rnn",
           "rnn_bptt", "rnn_cell", "rnn_step_jacobian", "scale_to_spectral_radius", "spectral_radius",
           "state_gradient_norms"]
