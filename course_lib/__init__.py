"""Reference code, Triton kernels, graders and tasks for "Memory in sequence models".

Importing this package has one deliberate side effect (see ``course_lib._triton``): on a machine
without a CUDA GPU it sets ``TRITON_INTERPRET=1`` so that every Triton kernel in the course runs on
CPU tensors through Triton's interpreter, with nothing for the learner to configure.
"""

from course_lib._triton import TRITON_MODE, triton_available

__version__ = "0.1.0"
__all__ = ["TRITON_MODE", "triton_available", "__version__"]
