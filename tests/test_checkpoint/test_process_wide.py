"""What ``import mmpoolformer`` changes for the whole process, and how to opt out.

With mmpoolformer imported, checkpoints written by plain mmdet (no mmpoolformer in that
process) still load for ``Runner.test`` (``load_from``) and ``resume``, and so does an
mmdet model-zoo style checkpoint. A checkpoint that needs a type outside the allowlist is
refused with one line that names the type and the way to load it if one trusts it.
"""
import json
import os
import os.path as osp
import pickle
import subprocess
import sys
import textwrap

import mmdet
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

import mmpoolformer.checkpoint.safe_load as safe_load
from mmpoolformer.checkpoint import (
    UnsafeCheckpointError,
    add_safe_globals,
    load_checkpoint_file,
    replaces_mmengine_loaders,
)
from mmpoolformer.datasets import generate
from mmpoolformer.datasets.synthetic import CLASSES

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MMDET_RETINANET = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'retinanet',
                           'retinanet_r18_fpn_1x_coco.py')
SIZE = 64

# mmdet's own RetinaNet-R18 config, made tiny: 1/4 of the channels, 64 px images, 3
# classes, iterations instead of epochs, no ImageNet download (its backbone would fetch
# torchvision://resnet18).
MODEL = dict(backbone=dict(base_channels=16, init_cfg=None),
             neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
             bbox_head=dict(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1),
             test_cfg=dict(score_thr=0.0))
CONFIG = """
_base_ = [{base!r}]
data_root = {root!r}
metainfo = dict(classes={classes!r})
model = {model!r}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, metainfo=metainfo,
                                     pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, metainfo=metainfo,
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2, val_interval=1000,
                 val_begin=1000)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
default_hooks = dict(checkpoint=dict(interval=2, by_epoch=False),
                     logger=dict(interval=1), visualization=dict(draw=False))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
"""

# Trains the config above for 2 iterations in a process that never imports mmpoolformer:
# iter_2.pth is exactly what plain mmdet + mmengine write.
TRAIN_PLAIN = """
import sys
from mmengine.config import Config
from mmengine.runner import Runner
cfg = Config.fromfile(sys.argv[1])
cfg.work_dir = sys.argv[2]
Runner.from_cfg(cfg).train()
assert not [m for m in sys.modules if m.startswith('mmpoolformer')], 'mmpoolformer imported'
"""


def python(code, *args, env=None, timeout=300):
    proc = subprocess.run([sys.executable, '-c', code, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def plain_mmdet(tmp_path_factory):
    """A tiny mmdet RetinaNet config and the checkpoint that plain mmdet trains from it."""
    root = tmp_path_factory.mktemp('plain_mmdet')
    generate(str(root / 'data'), num_train=2, num_val=2, seed=0, size=SIZE, tasks=('det', ),
             progress=False)
    config = root / 'retinanet_r18_tiny.py'
    config.write_text(CONFIG.format(base=MMDET_RETINANET, root=f'{root}/data/coco/',
                                    classes=CLASSES, model=MODEL, size=SIZE))
    rc, log = python(TRAIN_PLAIN, config, root / 'train')
    assert rc == 0, log[-3000:]
    return config, root / 'train' / 'iter_2.pth'


def runner(config, work_dir, **options):
    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'plain-mmdet-{work_dir.name}'
    cfg.merge_from_dict(options)
    return Runner.from_cfg(cfg)


@pytest.fixture
def loads(monkeypatch):
    """The files that mmengine's checkpoint loaders hand to mmpoolformer's loader."""
    calls = []
    original = safe_load._load
    monkeypatch.setattr(safe_load, '_load',
                        lambda name, *args: (calls.append(str(name)), original(name, *args))[1])
    return calls


def test_import_installs_the_allowlist_and_the_loaders():
    assert replaces_mmengine_loaders()
    assert CheckpointLoader._get_checkpoint_loader('iter_2.pth') is \
        safe_load._mmengine_local_loader
    for url in ('http://example.org/a.pth', 'https://example.org/a.pth'):
        assert CheckpointLoader._get_checkpoint_loader(url) is safe_load._mmengine_http_loader
    allowed = safe_load.get_safe_globals()  # torch's allowlist, or the restricted unpickler's
    def objects(items):
        return [item[0] if isinstance(item, tuple) else item for item in items]

    assert HistoryBuffer in objects(allowed) and np.ndarray in objects(allowed)
    assert all(obj in objects(allowed) for obj in objects(safe_load.safe_globals()))


def test_the_switch_takes_0_or_1_and_nothing_else(monkeypatch):
    monkeypatch.setenv('MMPOOLFORMER_SAFE_LOAD', '0')
    assert not replaces_mmengine_loaders()
    monkeypatch.setenv('MMPOOLFORMER_SAFE_LOAD', '1')
    assert replaces_mmengine_loaders()
    monkeypatch.setenv('MMPOOLFORMER_SAFE_LOAD', 'off')
    with pytest.raises(ValueError, match=r"MMPOOLFORMER_SAFE_LOAD must be 1 .* or 0 .*, "
                                         r"got 'off'"):
        replaces_mmengine_loaders()


@pytest.mark.slow
def test_plain_mmdet_checkpoint_loads_for_test_and_resumes(plain_mmdet, tmp_path, loads):
    config, checkpoint = plain_mmdet
    saved = load_checkpoint_file(checkpoint)
    # What mmengine writes for mmdet: the pieces that need the allowlist are really there.
    assert saved['meta']['dataset_meta']['classes'] == CLASSES
    assert isinstance(saved['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert saved['optimizer']['state'] and saved['meta']['iter'] == 2
    loads.clear()

    metrics = runner(config, tmp_path / 'test', load_from=str(checkpoint)).test()
    assert loads == [str(checkpoint)]
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0

    loads.clear()
    resumed = runner(config, tmp_path / 'resume', load_from=str(checkpoint), resume=True,
                     **{'train_cfg.max_iters': 3})
    resumed.train()
    assert loads == [str(checkpoint)]
    assert resumed.iter == 3
    # The message hub came back from the checkpoint: 2 losses from before, 1 new one.
    assert len(resumed.message_hub.get_scalar('train/loss').data[0]) == 3
    assert (tmp_path / 'resume' / 'iter_3.pth').exists()
    assert not (tmp_path / 'resume' / 'iter_2.pth').exists()


def model_zoo_checkpoint(state_dict):
    """How mmdet 2.x model-zoo checkpoints look: mmcv's meta, with numpy values in it."""
    return {
        'meta': {
            'mmdet_version': '2.25.0', 'mmcv_version': '1.6.0', 'epoch': 12,
            'iter': np.int64(87960), 'seed': np.int64(1418215408),
            'CLASSES': CLASSES, 'PALETTE': np.array([[220, 20, 60], [0, 130, 230],
                                                     [250, 170, 30]], dtype=np.uint8),
            'class_names': np.array(CLASSES), 'lr': np.float32(0.0002),
            'env_info': 'sys.platform: linux\nPython: 3.7.10', 'config': "model = dict()",
            'exp_name': 'retinanet_r18_fpn_1x_coco.py', 'time': 'Sat Jan 30 2021',
            'hook_msgs': {'last_ckpt': 'work_dirs/epoch_12.pth'},
        },
        'state_dict': state_dict,
    }


def test_model_zoo_checkpoint_with_numpy_meta_loads(plain_mmdet_model, tmp_path, loads):
    model = plain_mmdet_model
    reference = {k: torch.randn_like(v) if v.is_floating_point() else v
                 for k, v in model.state_dict().items()}
    path = tmp_path / 'retinanet_r18_fpn_1x_coco_20220407-4f5e2e3a.pth'
    torch.save(model_zoo_checkpoint(reference), path)
    checkpoint = load_checkpoint(model, str(path), map_location='cpu')
    assert loads == [str(path)]
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    meta = checkpoint['meta']
    assert meta['PALETTE'].dtype == np.uint8 and meta['PALETTE'][2].tolist() == [250, 170, 30]
    assert meta['class_names'].tolist() == list(CLASSES) and meta['iter'] == 87960


@pytest.fixture(scope='module')
def plain_mmdet_model():
    """mmdet's tiny RetinaNet-R18 of the config above (built without a Runner)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(MMDET_RETINANET)
    cfg.merge_from_dict(dict(model=MODEL))  # nested dicts merge, as in the config file
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg.model)


class OwnType:
    """A type of the user's, e.g. in the meta of their own checkpoints."""

    def __init__(self, value):
        self.value = value


def test_an_unknown_type_is_refused_in_one_line_naming_it_and_the_opt_out(tmp_path):
    path = tmp_path / 'own.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'own': OwnType(5)}}, path)
    model = torch.nn.Module()
    model.w = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(UnsafeCheckpointError) as error:
        load_checkpoint(model, str(path))  # what Runner's load_from and resume call
    message = str(error.value)
    assert '\n' not in message
    assert message.startswith(f'refused to load {path}: it is not a plain-data checkpoint '
                              f'(it would import {__name__}.OwnType)'), message
    assert 'mmpoolformer.checkpoint.add_safe_globals' in message
    assert 'MMPOOLFORMER_SAFE_LOAD=0 TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1' in message

    # The remedy the message gives first: allowlisting the type, and nothing more (on every
    # torch: through torch's own allowlist where it has one, else mmpoolformer's unpickler).
    add_safe_globals([OwnType])
    checkpoint = load_checkpoint(model, str(path))
    assert checkpoint['meta']['own'].value == 5 and torch.equal(model.w, torch.ones(2))


# MMPOOLFORMER_SAFE_LOAD=0: mmengine's loaders stay; the allowlist is still added (it only
# adds types), so mmengine's own checkpoints load; a trusted file with a type of its own
# loads with torch's TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 where torch's torch.load defaults to
# weights_only (torch >= 2.6), and at once where it does not; the tools' pre-check lets it.
OPTED_OUT = """
import os, sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from own_type import OwnType
import mmpoolformer
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader, load_from_http, load_from_local
from mmpoolformer.checkpoint.safe_load import check_checkpoint_file
assert CheckpointLoader._get_checkpoint_loader('a.pth') is load_from_local
assert CheckpointLoader._get_checkpoint_loader('https://example.org/a.pth') is load_from_http
buffer = HistoryBuffer()
buffer.update(0.5)
torch.save({'message_hub': {'log_scalars': {'loss': buffer}}, 'meta': {'seed': np.int64(3)}},
           'mmengine.pth')
loaded = CheckpointLoader.load_checkpoint('mmengine.pth')
assert loaded['message_hub']['log_scalars']['loss'].mean() == 0.5
torch.save({'meta': {'own': OwnType(7)}}, 'own.pth')
check_checkpoint_file('own.pth')
weights_only_default = sys.argv[2] == '1'
try:
    CheckpointLoader.load_checkpoint('own.pth')
except Exception as e:  # torch's own refusal: weights_only is torch's default
    assert weights_only_default and 'OwnType' in str(e), e
else:
    assert not weights_only_default, 'loaded without TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
os.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = '1'
assert CheckpointLoader.load_checkpoint('own.pth')['meta']['own'].value == 7
print('opted out')
"""


def test_opt_out_keeps_mmengine_loaders(tmp_path):
    (tmp_path / 'own_type.py').write_text(textwrap.dedent("""
        class OwnType:
            def __init__(self, value):
                self.value = value
    """))
    code = OPTED_OUT.replace("'mmengine.pth'", json.dumps(str(tmp_path / 'mmengine.pth')))
    code = code.replace("'own.pth'", json.dumps(str(tmp_path / 'own.pth')))
    rc, log = python(code, tmp_path, int(_torch_loads_weights_only_by_default(tmp_path)),
                     env={'MMPOOLFORMER_SAFE_LOAD': '0'})
    assert rc == 0 and 'opted out' in log, log[-3000:]


class _Probe:
    """A class no allowlist holds."""


def _torch_loads_weights_only_by_default(tmp_path) -> bool:
    """Whether a plain ``torch.load(f)`` refuses an object of a class of its caller's."""
    path = tmp_path / 'probe.pth'
    torch.save({'own': _Probe()}, path)
    try:
        torch.load(path)
    except pickle.UnpicklingError:
        return True
    return False
