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


def test_train_amp_flag_picks_the_cpu_wrapper_without_cuda():
    import importlib.util
    spec = importlib.util.spec_from_file_location('train_tool', 'tools/train.py')
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    from mmengine.config import Config
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD'))))
    train.enable_amp(cfg)
    expected = 'AmpOptimWrapper' if torch.cuda.is_available() \
        else 'mmpoolformer.AmpCPUOptimWrapper'
    assert cfg.optim_wrapper.type == expected
