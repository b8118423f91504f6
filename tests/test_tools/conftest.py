import pytest

from mmpoolformer.datasets import generate

SIZE = 64


@pytest.fixture(scope='session')
def shapes(tmp_path_factory):
    """A tiny synthetic dataset (8 train, 4 val images of 64x64) in both layouts."""
    root = tmp_path_factory.mktemp('shapes')
    generate(str(root), num_train=8, num_val=4, seed=0, size=SIZE, progress=False)
    return root
