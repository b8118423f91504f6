"""Loading ImageNet checkpoints in the official, mmpretrain and timm layouts."""
import os

import pytest
import torch

import mmpoolformer.checkpoint.loading as loading
from mmpoolformer.checkpoint import CheckpointError, load_pretrained
from mmpoolformer.models import PoolFormer
from mmpoolformer.testing import (
    official_from_arch,
    official_imagenet_checkpoint,
    to_mmpretrain_layout,
)

TINY = dict(layers=[1, 2, 1, 1], embed_dims=[8, 16, 24, 32], mlp_ratios=4,
            layer_scale_init_value=1e-5)
OTHER = dict(TINY, embed_dims=[8, 16, 24, 40])
DEEPER = dict(TINY, layers=[1, 2, 2, 1])


def imagenet_state_dict(arch=TINY, seed=0):
    return official_imagenet_checkpoint(arch, seed)


def to_timm(sd):
    """timm's renamed keys, made from our own layout: 4-D fc kernels, (C, 1, 1) scales."""
    model = PoolFormer(TINY)
    model.load_state_dict(ours_from_official(sd), strict=False)
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith('out_norms.'):
            continue
        if '.mlp.fc' in k and k.endswith('weight'):
            v = v[:, :, None, None]
        if k.endswith('.scale'):
            v = v[:, None, None]
        out[k] = v
    out.update({'head.norm.weight': sd['norm.weight'], 'head.norm.bias': sd['norm.bias'],
                'head.fc.weight': sd['head.weight'], 'head.fc.bias': sd['head.bias']})
    return out


def ours_from_official(sd):
    from mmpoolformer.checkpoint import convert_state_dict
    return convert_state_dict(sd)[0]


@pytest.fixture
def logs(monkeypatch):
    messages = []
    monkeypatch.setattr(loading, 'print_log', lambda msg, **kw: messages.append(msg))
    return messages


def reference_outputs(sd, x):
    ref = official_from_arch(TINY)
    ref.load_state_dict({k: v for k, v in sd.items() if not k.startswith(('norm', 'head'))},
                        strict=False)  # its output norms stay at weight 1, bias 0
    with torch.no_grad():
        return ref(x)


@pytest.mark.parametrize('layout', ['official', 'mmpretrain', 'timm'])
def test_init_cfg_loads_every_layout(tmp_path, layout, logs):
    sd = imagenet_state_dict()
    ckpt = {'official': sd, 'mmpretrain': to_mmpretrain_layout(sd), 'timm': to_timm(sd)}[layout]
    path = tmp_path / f'{layout}.pth'
    torch.save(ckpt, path)
    model = PoolFormer(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    x = torch.randn(2, 3, 45, 70)
    with torch.no_grad():
        got = model.eval()(x)
    for e, g in zip(reference_outputs(sd, x), got):
        assert (e - g).abs().max().item() <= 1e-5
    assert torch.equal(model.stem.conv.weight, sd['patch_embed.proj.weight'])
    missing_log = next(m for m in logs if m.startswith('not in the checkpoint'))
    assert 'out_norms.0.weight' in missing_log and 'stages.' not in missing_log
    unused_log = next(m for m in logs if m.startswith('checkpoint keys not used'))
    assert 'head' in unused_log and 'norm' in unused_log and 'network' not in unused_log


def test_prefix_selects_a_submodule(tmp_path, logs):
    sd = imagenet_state_dict()
    detector = {'state_dict': {'backbone.' + k: v for k, v in sd.items()
                               if not k.startswith(('norm.', 'head.'))}}
    detector['state_dict']['neck.conv.weight'] = torch.randn(4, 4)
    path = tmp_path / 'det.pth'
    torch.save(detector, path)
    missing, unused = load_pretrained(PoolFormer(TINY), str(path), prefix='backbone.')
    assert unused == [] and all(k.startswith('out_norms.') for k in missing)
    with pytest.raises(CheckpointError, match="no key of the checkpoint starts with prefix 'bb.'"):
        load_pretrained(PoolFormer(TINY), str(path), prefix='bb')


def test_wrong_width_names_the_key_and_both_shapes(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save(imagenet_state_dict(OTHER), path)
    with pytest.raises(CheckpointError) as e:
        load_pretrained(PoolFormer(TINY), str(path))
    msg = str(e.value)
    assert 'shape mismatch for stages.3.downsample.conv.weight' in msg
    assert 'network.5.proj.weight' in msg and '(40, 24, 3, 3)' in msg and '(32, 24, 3, 3)' in msg


def test_wrong_depth_is_refused_both_ways(tmp_path):
    deeper, tiny = tmp_path / 'deeper.pth', tmp_path / 'tiny.pth'
    torch.save(imagenet_state_dict(DEEPER), deeper)
    torch.save(imagenet_state_dict(TINY), tiny)
    with pytest.raises(CheckpointError, match=r'has backbone weights this model has no place '
                                              r'for: network\.4\.1\.'):
        load_pretrained(PoolFormer(TINY), str(deeper))
    model = PoolFormer(DEEPER)
    before = model.stem.conv.weight.clone()
    with pytest.raises(CheckpointError, match=r'lacks weights this model needs: '
                                              r'stages\.2\.blocks\.1\.'):
        load_pretrained(model, str(tiny))
    assert torch.equal(before, model.stem.conv.weight)  # nothing was half-loaded


def test_real_arch_mismatch_s12_into_m36(tmp_path):
    path = tmp_path / 's12.pth'
    sd = official_from_arch(PoolFormer.arch_settings['s12'], out_indices=()).state_dict()
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r'shape mismatch for stem\.conv\.weight .*'
                                              r'checkpoint has \(64, 3, 7, 7\), model has '
                                              r'\(96, 3, 7, 7\).*PoolFormer'):
        load_pretrained(PoolFormer('m36'), str(path))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint file not found: .*nope.pth'):
        load_pretrained(PoolFormer(TINY), str(tmp_path / 'nope.pth'))
    good = tmp_path / 'good.pth'
    torch.save(imagenet_state_dict(), good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:1000])
    text = tmp_path / 'notes.pth'
    text.write_text('these are not weights')
    for path in (truncated, text):
        with pytest.raises(CheckpointError, match='is not a readable PyTorch checkpoint'):
            load_pretrained(PoolFormer(TINY), str(path))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_a_pickle_that_runs_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'stem.conv.weight': _Evil(marker)}}, path)
    model = PoolFormer(TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointError, match='refused to load .*not a plain-data checkpoint'):
        model.init_weights()
    assert not marker.exists()
