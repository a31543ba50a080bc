"""Module 04: modern Hopfield networks — attention as an associative memory.

``reference`` holds the readable PyTorch code (modern, classical and dense Hopfield networks);
``layers`` Hopfield pooling and a Hopfield look-up layer; ``energy_transformer`` attention as
descent on an energy; ``experiments`` the seeded measurements of the lecture; ``images`` small
generated binary images; ``plots`` the figures and the interactive β view.
"""

from course_lib.hopfield.layers import HopfieldLayer, HopfieldLookup, HopfieldPooling
from course_lib.hopfield.reference import (
    classical_energy,
    classical_update,
    classical_update_async,
    dense_energy,
    dense_update,
    effective_patterns,
    hebbian_weights,
    hopfield_energy,
    hopfield_retrieve,
    keys_for_mass,
    lse,
    update_as_attention,
)

__all__ = [
    "HopfieldLayer",
    "HopfieldLookup",
    "HopfieldPooling",
    "classical_energy",
    "classical_update",
    "classical_update_async",
    "dense_energy",
    "dense_update",
    "effective_patterns",
    "hebbian_weights",
    "hopfield_energy",
    "hopfield_retrieve",
    "keys_for_mass",
    "lse",
    "update_as_attention",
]
