import pytest

from hwmodels import load_device
from workloads import load_model


@pytest.fixture(scope="session")
def llama7b():
    return load_model("llama-2-7b")


@pytest.fixture(scope="session")
def h100():
    return load_device("h100-sxm")


@pytest.fixture(scope="session")
def a100():
    return load_device("a100-80gb")


# Property tests draw the same examples on every run (reproducible CI); explore locally with
# a larger max_examples or `--hypothesis-profile` of your own.
from hypothesis import settings  # noqa: E402

settings.register_profile("mpqsim", derandomize=True, deadline=None)
settings.load_profile("mpqsim")
