import os.path as osp
import shutil
import tempfile

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from mmpoolformer.datasets import generate

# Hypothesis caches what it learns (examples, constants of the source) in ./.hypothesis by
# default; the property tests run derandomised and need no cache: keep the checkout clean.
set_hypothesis_home_dir(osp.join(tempfile.gettempdir(), 'mmpoolformer-hypothesis'))

SIZE = 64
NUM_TRAIN, NUM_VAL = 8, 4


@pytest.fixture(scope='session')
def shapes(tmp_path_factory):
    """A tiny synthetic dataset (8 train, 4 val images of 64x64) in both layouts."""
    root = tmp_path_factory.mktemp('shapes')
    generate(str(root), num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0, size=SIZE,
             progress=False)
    return root


@pytest.fixture(scope='session')
def copy_shapes(shapes, tmp_path_factory):
    """A function returning a fresh copy of ``shapes`` to damage."""
    def copy(name):
        target = tmp_path_factory.mktemp(name) / 'shapes'
        shutil.copytree(shapes, target)
        return target
    return copy
