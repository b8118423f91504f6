"""tools/analysis/benchmark_model.py: the two models it times compute the same thing, it
prints both rows of each table, and it refuses backbones without an official counterpart.

Speed is not tested (benchmarks are not timed tests). Everything runs in-process at 64x64,
batch 1 or 2; the Mask R-CNN checks sample fewer RoIs than the configs (the RoI heads'
cost does not depend on the image size).
"""
import re

import pytest
import torch

from .tool_helpers import REPO, load_tool

TOOL = 'tools/analysis/benchmark_model.py'
FEWER_ROIS = {
    'model.train_cfg.rpn_proposal.max_per_img': 64,
    'model.train_cfg.rcnn.sampler.num': 32,
}
CONFIGS = {
    'retinanet': ('configs/quickstart/retinanet_poolformer_s12_shapes.py', None),
    'semantic_fpn': ('configs/quickstart/semantic_fpn_poolformer_s12_shapes.py', None),
    'mask_rcnn': ('configs/quickstart/mask_rcnn_poolformer_s12_shapes.py', FEWER_ROIS),
    # The official baselines return channels_last views: their RoI features need the
    # contiguous copy that mmpoolformer makes mmcv's RoIAlign read.
    'mask_rcnn_convformer': ('configs/mask_rcnn_convformer_s18.py', FEWER_ROIS),
}
SIZE = (64, 64)
ROW = re.compile(r'^\| (mmpoolformer|reference) \| ([\d.]+) \| ([\d.]+)x \| ([\d.]+) \| '
                 r'(\d+)% \| (\d+|n/a) \|$', re.M)


@pytest.fixture(scope='module')
def tool():
    return load_tool(TOOL)


@pytest.fixture
def one_thread():
    # The CI machine's two cores are shared; one thread per process keeps these runs from
    # oversubscribing them. Nothing here is timed.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config_path(name):
    return f'{REPO}/{CONFIGS[name][0]}'


@pytest.mark.parametrize('name', list(CONFIGS))
def test_both_models_compute_the_same_losses(tool, name, one_thread):
    cfg = tool.load(config_path(name), CONFIGS[name][1])
    pair = tool.build_pair(cfg, SIZE)
    assert pair.backbone_error < 1e-5
    official = getattr(pair.reference.backbone, 'model', pair.reference.backbone)
    assert type(official).__module__.startswith('mmpoolformer.testing')
    data = tool.make_batch(cfg, 2, SIZE)
    ours, ref = tool.losses(pair.ours, data), tool.losses(pair.reference, data)
    assert ours.keys() == ref.keys() and 'loss' in ours
    assert ours['loss'] > 0
    for key, want in ref.items():
        assert abs(ours[key] - want) <= 1e-4 * max(abs(want), 1e-3), (key, ours[key], want)
    if name.startswith('mask_rcnn'):  # the random data are what mmdet's pipeline makes
        from mmdet.structures.mask import BitmapMasks
        masks = data['data_samples'][0].gt_instances.masks
        assert isinstance(masks, BitmapMasks) and masks.masks.shape == (8, *SIZE)
        assert 'loss_mask' in ours


def test_prints_both_rows_of_each_mode(tool, capsys, one_thread):
    report = tool.main([config_path('retinanet'), '--size', *map(str, SIZE), '--batch', '1',
                        '--repeat', '1', '--modes', 'train', 'infer'])
    out = capsys.readouterr().out
    assert 'flags: fp32' in out and 'batch 1, 64x64' in out and 'torch ' in out
    tables = out.split('## ')[1:]
    assert [t.split(':')[0] for t in tables] == ['train', 'infer']
    for table, mode in zip(tables, ('train', 'infer')):
        rows = ROW.findall(table)
        assert [r[0] for r in rows] == ['mmpoolformer', 'reference'], table
        step = {impl: float(s) for impl, s, *_ in rows}
        assert all(t > 0 for t in step.values())
        # The ratio and the share are computed from the printed run's own medians.
        for impl, s, ratio, backbone, share, _ in rows:
            assert float(ratio) == pytest.approx(step['reference'] / float(s), abs=0.01)
            assert int(share) == pytest.approx(100 * float(backbone) / float(s), abs=1)
        assert set(report[mode]) == {'mmpoolformer', 'reference'}


def test_amp_and_channels_last_run(tool, capsys, one_thread):
    tool.main([config_path('semantic_fpn'), '--size', *map(str, SIZE), '--batch', '1',
               '--repeat', '1', '--modes', 'train', '--amp', '--channels-last'])
    out = capsys.readouterr().out
    assert 'flags: bf16 autocast, channels-last' in out
    # The segmentor's preprocessor pads to --size, not to the config's 256x256 crop.
    assert 'backbone input (train): 1x3x64x64' in out
    assert 'neck and heads channels_last' in out
    assert [r[0] for r in ROW.findall(out)] == ['mmpoolformer', 'reference']


def refusal(tool, config, *options):
    argv = [config, '--size', *map(str, SIZE), '--batch', '1', '--repeat', '1']
    if options:
        argv += ['--cfg-options', *options]
    with pytest.raises(SystemExit) as exit_info:
        tool.main(argv)
    message = str(exit_info.value.code)
    assert message.startswith('ERROR: ') and '\n' not in message, message
    return message


def test_refuses_a_backbone_without_official_definition(tool, tmp_path, one_thread):
    config = tmp_path / 'retinanet_r18.py'
    config.write_text(f"_base_ = ['{config_path('retinanet')}']\n"
                      "model = dict(backbone=dict(_delete_=True, type='ResNet', depth=18, "
                      "out_indices=(1, 2, 3)), neck=dict(in_channels=[128, 256, 512]))\n")
    assert 'ResNet is not an mmpoolformer MetaFormer' in refusal(tool, str(config))


def test_refuses_settings_the_official_code_does_not_have(tool, one_thread):
    # Same parameters as the official PoolFormer, another function: caught on the outputs.
    message = refusal(tool, config_path('retinanet'), 'model.backbone.pool_size=5')
    assert 'computes something else than the official PoolFormer' in message
    # Other parameters (an attention mixer in every stage): caught when loading weights.
    message = refusal(tool, config_path('retinanet'),
                      'model.backbone.token_mixers.type=Attention')
    assert 'other parameters than the official hybrid PoolFormer' in message
    assert 'stochastic depth' in refusal(tool, config_path('retinanet'),
                                         'model.backbone.drop_path_rate=0.1')
