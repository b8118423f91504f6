import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end runs (minutes); CI runs them too')
