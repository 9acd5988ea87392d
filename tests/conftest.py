"""Fixtures shared by the test modules."""
import pytest

from srflow_nb.testing import tiny_inputs, tiny_model


@pytest.fixture(scope="module")
def tiny():
    "A tiny SRFlow (zero-initialised parameters perturbed, eval mode) and one 8x8 LR image: the engine and sampling tests' model."
    model = tiny_model(seed=2, perturb_std=0.02).eval()
    _, lr = tiny_inputs(1, (32, 32), 4, seed=4)
    return model, lr
