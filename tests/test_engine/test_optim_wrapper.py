import pytest
import torch
import torch.nn as nn
from mmengine.registry import OPTIM_WRAPPERS

import mmpoolformer  # noqa: F401
from mmpoolformer.engine import AmpCPUOptimWrapper


def test_amp_cpu_wrapper_runs_the_forward_in_bf16_and_steps_fp32_params():
    model = nn.Linear(8, 4)
    wrapper = OPTIM_WRAPPERS.build(dict(
        type='mmpoolformer.AmpCPUOptimWrapper',
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    assert isinstance(wrapper, AmpCPUOptimWrapper)
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
        out = model(torch.randn(2, 8))
        assert out.dtype == torch.bfloat16
        loss = out.float().pow(2).mean()
    assert not torch.is_autocast_enabled('cpu')
    wrapper.update_params(loss)
    assert model.weight.dtype == torch.float32
    assert not torch.equal(before, model.weight)


def _train_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location('train_tool', 'tools/train.py')
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    return train


def test_train_amp_flag_picks_the_cpu_wrapper_without_cuda():
    from mmengine.config import Config
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD'))))
    _train_tool().enable_amp(cfg, True)
    expected = 'AmpOptimWrapper' if torch.cuda.is_available() \
        else 'mmpoolformer.AmpCPUOptimWrapper'
    assert cfg.optim_wrapper.type == expected
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD'))))
    _train_tool().enable_amp(cfg, False)
    assert cfg.optim_wrapper.type == 'OptimWrapper'


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CUDA machine keeps AmpOptimWrapper')
def test_a_configs_amp_wrapper_runs_as_bf16_autocast_on_a_cpu_only_machine():
    """The protocol configs ask for mmengine's AmpOptimWrapper, which needs CUDA."""
    from mmengine.config import Config
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper', loss_scale='dynamic',
                                         optimizer=dict(type='SGD'))))
    _train_tool().enable_amp(cfg, False)
    assert cfg.optim_wrapper.type == 'mmpoolformer.AmpCPUOptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
