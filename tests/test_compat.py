"""mmpoolformer/compat.py: the supported torch range, and the fallbacks of an older torch,
checked on whatever torch runs the suite (CI runs it on the oldest and the newest).

The fallbacks are also tested where the running torch has the newer mechanism: the
restricted unpickler and the autograd.Function form of a custom operator give what torch's
own mechanisms give.
"""
import io
import os
import pickle
import subprocess
import sys
from typing import List, Tuple

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from test_reliability.test_checkpoint_faults import _RunsCode  # a code-running pickle

from mmpoolformer import compat
from mmpoolformer.checkpoint import (
    UnsafeCheckpointError,
    load_checkpoint_file,
    restricted_unpickler,
    safe_globals,
    safe_load,
)
from mmpoolformer.version import TORCH_NEWEST, TORCH_OLDEST

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------- the supported range
@pytest.mark.parametrize('version,parsed', [('2.13.0+cpu', (2, 13, 0)), ('2.1.2', (2, 1, 2)),
                                            ('2.15.0a0+git1234abc', (2, 15, 0)),
                                            ('2.14', (2, 14, 0))])
def test_torch_versions_are_read_from_any_build_string(version, parsed):
    assert compat.torch_version(version) == parsed


def test_the_range_ends_are_accepted_and_outside_refused_in_one_line(monkeypatch):
    monkeypatch.delenv(compat.UNTESTED_TORCH_VAR, raising=False)
    compat.check_torch('%d.%d.0' % TORCH_OLDEST)
    compat.check_torch('%d.%d.9+cu130' % TORCH_NEWEST)
    older = '%d.%d.1' % (TORCH_OLDEST[0], TORCH_OLDEST[1] - 1)
    newer = '%d.%d.0' % (TORCH_NEWEST[0], TORCH_NEWEST[1] + 1)
    needed = f'needs torch >= {TORCH_OLDEST[0]}.{TORCH_OLDEST[1]}, <= ' \
             f'{TORCH_NEWEST[0]}.{TORCH_NEWEST[1]}.x'
    for version in (older, '1.13.1'):
        with pytest.raises(ImportError) as error:
            compat.check_torch(version)
        assert '\n' not in str(error.value) and needed in str(error.value)
        assert f'this environment has torch {version}' in str(error.value)
    with pytest.raises(ImportError, match=f'{compat.UNTESTED_TORCH_VAR}=1'):
        compat.check_torch(newer)
    monkeypatch.setenv(compat.UNTESTED_TORCH_VAR, '1')
    compat.check_torch(newer)  # the user's choice: no error


def test_importing_under_an_unsupported_torch_fails_with_one_line():
    code = ('import torch; torch.__version__ = "2.0.1"\n'
            'try:\n    import mmpoolformer\n'
            'except ImportError as e:\n    print(str(e)); raise SystemExit(3)\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.count('\n') == 1
    assert proc.stdout.startswith('mmpoolformer needs torch >= 2.1, <= 2.14.x; this '
                                  'environment has torch 2.0.1.')


def test_setup_py_declares_the_same_range_to_pip():
    setup = {'__file__': os.path.join(REPO, 'setup.py')}
    with open(setup['__file__']) as f:
        code = f.read().split("if __name__ == '__main__':")[0]
    exec(compile(code, 'setup.py', 'exec'), setup)
    requirement = setup['torch_requirement'](setup['read_version_file']())
    assert requirement == f'torch>={TORCH_OLDEST[0]}.{TORCH_OLDEST[1]},' \
                          f'<{TORCH_NEWEST[0]}.{TORCH_NEWEST[1] + 1}'


# ----------------------------------------------------------------- custom operators
def _make_ops():
    """A List-returning and a tuple-returning operator as FunctionOps, with backwards."""
    def listed(x: torch.Tensor, w: torch.Tensor, shift: float) -> List[torch.Tensor]:
        return [x * w + shift, (x * w).sum(0)]

    def tupled(x: torch.Tensor, w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return x * w, x.sum()

    def setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])

    def listed_grad(ctx, grads):  # custom_op passes a List output's gradients as one list
        x, w = ctx.saved_tensors
        g = grads[0] + grads[1]
        return g * w, g * x, None

    def tupled_grad(ctx, g_out, g_sum):
        x, w = ctx.saved_tensors
        return g_out * w + g_sum, g_out * x

    ops = []
    for fn, grad in ((listed, listed_grad), (tupled, tupled_grad)):
        op = compat.FunctionOp(f'test::{fn.__name__}', fn)
        op.register_autograd(grad, setup_context=setup)
        ops.append(op)
    return ops


def test_function_ops_give_the_registered_gradients_and_the_output_types():
    listed, tupled = _make_ops()
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    out = listed(x, w, 0.5)
    assert isinstance(out, list) and len(out) == 2
    assert torch.equal(out[0].detach(), (x * w + 0.5).detach())
    assert isinstance(tupled(x, w), tuple)
    # the registered backwards against autograd of the same expressions
    assert torch.autograd.gradcheck(lambda a, b: tuple(listed(a, b, 0.5)), (x, w))
    assert torch.autograd.gradcheck(lambda a, b: tupled(a, b), (x, w))
    with torch.no_grad():  # no autograd: the function itself
        assert tupled(x, w)[0].grad_fn is None


@pytest.mark.skipif(not compat.HAS_CUSTOM_OPS, reason='needs torch.library.custom_op to '
                    'compare with (torch >= 2.4); on an older torch the kernels run as '
                    'FunctionOps, which the parity suite checks')
def test_the_kernels_as_function_ops_match_the_custom_operators():
    """The fused PoolFormer token mixing, forward and every gradient, through FunctionOps
    built from the same functions as the registered custom operator."""
    from mmpoolformer.models.kernels import portable
    op = portable._pool_mix_op
    fallback = compat.FunctionOp('test::pool_mix', op._init_fn)
    fallback.register_autograd(portable._pool_mix_grad, setup_context=portable._pool_mix_setup)
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, 7, 9, 5, generator=gen, dtype=torch.float64),
              torch.randn(2, 1, 1, 5, generator=gen, dtype=torch.float64),
              torch.randn(5, generator=gen, dtype=torch.float64)]
    results = []
    for run in (op, fallback):
        leaves = [t.clone().requires_grad_() for t in inputs]
        out = run(*leaves, 3, True)[0]
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
        results.append([out.detach()] + [t.grad for t in leaves])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


# ----------------------------------------------------------------- checkpoints
def _mechanisms():
    yield pytest.param(False, id='restricted-unpickler')
    yield pytest.param(True, id='torch-allowlist', marks=pytest.mark.skipif(
        not compat.SAFE_GLOBALS_IN_TORCH, reason='torch < 2.4 has no allowlist to extend'))


@pytest.fixture(params=list(_mechanisms()))
def mechanism(request, monkeypatch):
    """Loads through torch's extended allowlist or through the restricted unpickler."""
    monkeypatch.setattr(compat, 'SAFE_GLOBALS_IN_TORCH', request.param)
    restricted_unpickler.add_safe_globals(safe_globals())  # what import does on an old torch
    return request.param


def _mmengine_checkpoint(path):
    hub = MessageHub.get_instance('compat-test')
    for i in range(3):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
    state = {'meta': {'seed': np.int64(7), 'lr': np.float32(0.5), 'hist': np.arange(4),
                      'names': np.array(['a', 'bc']), 'classes': ('circle', 'square'),
                      'ids': {1, 2}, 'blob': b'\x00\x01', 'dtype': torch.bfloat16,
                      'device': torch.device('cpu')},
             'message_hub': hub.state_dict(),
             'state_dict': {'w': torch.ones(2, dtype=torch.bfloat16),
                            'p': torch.nn.Parameter(torch.arange(3.))}}
    torch.save(state, path)


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_mmengine_checkpoints_load_as_data(mechanism, tmp_path, legacy):
    path = tmp_path / 'ckpt.pth'
    _mmengine_checkpoint(path)
    if legacy:
        state = torch.load(path, weights_only=False)
        torch.save(state, path, _use_new_zipfile_serialization=False)
    loaded = load_checkpoint_file(str(path))
    meta = loaded['meta']
    assert meta['seed'] == 7 and meta['hist'].tolist() == [0, 1, 2, 3]
    assert meta['names'].tolist() == ['a', 'bc'] and meta['ids'] == {1, 2}
    assert meta['blob'] == b'\x00\x01' and meta['dtype'] == torch.bfloat16
    assert meta['device'] == torch.device('cpu')
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.mean() == pytest.approx(11 / 18)
    assert loaded['state_dict']['w'].dtype == torch.bfloat16
    assert torch.equal(loaded['state_dict']['p'], torch.arange(3.))


def test_a_code_running_pickle_is_refused_and_does_not_run(mechanism, tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': _RunsCode(marker)}}, path)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_checkpoint_file(str(path))
    message = str(error.value)
    assert '\n' not in message and not marker.exists()
    assert message.startswith(f'refused to load {path}: it is not a plain-data checkpoint '
                              f'(it would import {os.system.__module__}.system)'), message
    assert 'mmpoolformer.checkpoint.add_safe_globals' in message


def test_the_restricted_unpickler_reaches_getattr_only_for_history_buffers(tmp_path):
    """(torch's allowlist maps builtins.getattr to the same guard: test_safe_load.py)"""
    class Gadget:
        def __reduce__(self):
            return getattr, (HistoryBuffer, 'update')

    restricted_unpickler.add_safe_globals(safe_globals())
    data = pickle.dumps({'x': Gadget()}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"getattr\(HistoryBuffer, 'update'\)"):
        restricted_unpickler.Unpickler(io.BytesIO(data)).load()
    assert safe_load._refusal_reason("getattr(HistoryBuffer, 'update') is not allowed")


def test_a_users_type_loads_once_allowlisted(mechanism, tmp_path):
    path = tmp_path / 'own.pth'
    torch.save({'meta': {'own': _Own(5)}}, path)
    if not mechanism:
        restricted_unpickler._added.pop(f'{__name__}._Own', None)
        with pytest.raises(UnsafeCheckpointError, match=rf'import {__name__}\._Own'):
            load_checkpoint_file(str(path))
    safe_load.add_safe_globals([_Own])
    assert load_checkpoint_file(str(path))['meta']['own'].value == 5


class _Own:
    def __init__(self, value):
        self.value = value


# ----------------------------------------------------------------- compile and export
def test_the_compile_switch_works_or_refuses_at_build_time_in_one_line():
    from mmpoolformer.models import PoolFormer
    reason = compat.compile_unsupported()
    if reason is None:
        assert PoolFormer('s12', compile=True).compile_options is not None
        return
    with pytest.raises(RuntimeError) as error:
        PoolFormer('s12', compile=True)
    assert str(error.value) == reason and '\n' not in reason
    assert reason.startswith('compile=True needs torch >= 2.5')
    PoolFormer('s12', compile=False)  # the eager fast paths still build


def test_autocast_queries_follow_the_context():
    assert not compat.autocast_enabled('cpu')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert compat.autocast_enabled('cpu') and not compat.autocast_enabled('cuda')
        assert compat.autocast_dtype('cpu') == torch.bfloat16
    assert compat.autocast_supports('cpu', torch.bfloat16)
