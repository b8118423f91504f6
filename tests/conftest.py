import os
import shutil
import tempfile

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption('--device', default='all', choices=('all', 'cpu', 'cuda'),
                     help='devices for the device-parametrized tests (parity suite): all '
                          '(default: the CPU, and CUDA when torch sees a GPU), cpu or cuda')


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end runs (minutes); CI runs them too')
    # torch.compile's caches (Inductor, AOTAutograd) in a folder of this test process's
    # own, inherited by the processes its tests start: every run compiles as a new machine
    # does, whatever earlier runs (or other versions of this code) left in the user's cache.
    if 'TORCHINDUCTOR_CACHE_DIR' not in os.environ:
        config._mmpoolformer_compile_cache = tempfile.mkdtemp(prefix='mmpoolformer-inductor-')
        os.environ['TORCHINDUCTOR_CACHE_DIR'] = config._mmpoolformer_compile_cache
    workers = os.environ.get('PYTEST_XDIST_WORKER_COUNT')
    if workers:
        # Under pytest-xdist (-n N), each worker and the processes its tests start get
        # their share of the cores, so that N workers do not oversubscribe the machine.
        threads = str(max(1, len(os.sched_getaffinity(0)) // int(workers)))
        os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = threads
        torch.set_num_threads(int(threads))


@pytest.fixture
def device(request):
    """The device of a device-parametrized test; a CUDA case without CUDA is skipped."""
    name = request.param
    chosen = request.config.getoption('--device')
    if chosen not in ('all', name):
        pytest.skip(f'{name} case not selected (--device {chosen})')
    if name == 'cuda' and not torch.cuda.is_available():
        pytest.skip('CUDA case: no CUDA device here (this is not a pass; run '
                    'tools/device_check.sh on a CUDA machine)')
    return torch.device(name)


def pytest_unconfigure(config):
    cache = getattr(config, '_mmpoolformer_compile_cache', None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)
