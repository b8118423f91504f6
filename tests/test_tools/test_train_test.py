"""End-to-end runs of tools/train.py and tools/test.py on tiny generated data (CPU)."""
import glob
import json
import os.path as osp
import pickle
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from .conftest import SIZE
from .tool_helpers import load_tool, trained_run

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def run(*args, cwd=REPO, timeout=600, env=None):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def det_options(root, iters=2):
    data_root = f'{root}/coco/'
    scale = f'({SIZE},{SIZE})'
    opts = [
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        # The detection quickstarts evaluate with [CocoMetric, DetectionErrorMetric].
        *(f'{split}_evaluator.{i}.ann_file={data_root}annotations/instances_val2017.json'
          for split in ('val', 'test') for i in (0, 1)),
        f'train_dataloader.dataset.pipeline.2.scale={scale}',
        f'val_dataloader.dataset.pipeline.1.scale={scale}',
        f'test_dataloader.dataset.pipeline.1.scale={scale}',
        'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
        'test_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False',
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1',
    ]
    return opts


def seg_options(root, iters=2):
    data_root = f'{root}/ade/ADEChallengeData2016'
    return [
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        f'train_dataloader.dataset.pipeline.2.scale=({2 * SIZE},{SIZE})',
        f'train_dataloader.dataset.pipeline.3.crop_size=({SIZE},{SIZE})',
        f'model.data_preprocessor.size=({SIZE},{SIZE})',
        f'val_dataloader.dataset.pipeline.1.scale=({2 * SIZE},{SIZE})',
        f'test_dataloader.dataset.pipeline.1.scale=({2 * SIZE},{SIZE})',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False',
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1',
    ]


def metrics(log):
    """The last value of each 'name: number' metric printed by mmengine."""
    found = {}
    for key, value in re.findall(r'((?:coco|mIoU|aAcc|mAcc)[\w/]*): (-?[\d.]+)', log):
        found[key] = float(value)
    return found


def with_options(options, *extra):
    return lambda root, iters=2: options(root, iters) + list(extra)


# After two iterations no score passes the default 0.05 threshold and COCOeval would get
# nothing to evaluate: keep every prediction.
CASES = {
    'retinanet': ('configs/quickstart/retinanet_poolformer_s12_shapes.py',
                  with_options(det_options, 'model.test_cfg.score_thr=0.0'),
                  ['coco/bbox_mAP', 'coco/bbox_mAP_50']),
    'mask_rcnn': ('configs/quickstart/mask_rcnn_poolformer_s12_shapes.py',
                  with_options(det_options, 'model.test_cfg.rcnn.score_thr=0.0'),
                  ['coco/bbox_mAP', 'coco/segm_mAP']),
    'semantic_fpn': ('configs/quickstart/semantic_fpn_poolformer_s12_shapes.py', seg_options,
                     ['mIoU', 'aAcc']),
    # A MetaFormer baseline with both separable convs and attention, in the same setup.
    'retinanet_caformer': ('configs/quickstart/retinanet_poolformer_s12_shapes.py',
                           with_options(det_options, 'model.test_cfg.score_thr=0.0',
                                        'model.backbone.type=CAFormer',
                                        'model.backbone.arch=s18'),
                           ['coco/bbox_mAP', 'coco/bbox_mAP_50']),
}


@pytest.mark.slow
@pytest.mark.parametrize('case', list(CASES))
def test_train_then_test_gives_real_metrics(case, shapes, tmp_path):
    config, options, names = CASES[case]
    opts = options(shapes)
    work_dir = tmp_path / 'work'
    rc, log = run('tools/train.py', config, '--work-dir', str(work_dir), '--cfg-options',
                  *opts)
    assert rc == 0, log[-3000:]
    ckpt = work_dir / 'iter_2.pth'
    assert ckpt.exists() and (work_dir / 'last_checkpoint').exists()
    train_metrics = metrics(log)
    assert set(names) <= set(train_metrics), log[-2000:]

    show_dir = 'vis'
    rc, log = run('tools/test.py', config, str(ckpt), '--work-dir', str(tmp_path / 'test'),
                  '--show-dir', show_dir, '--cfg-options', *opts)
    assert rc == 0, log[-3000:]
    found = metrics(log)
    for key in names:
        # mmdet prints mAPs in [0, 1]; mmseg prints percentages in [0, 100].
        assert 0.0 <= found[key] <= (100.0 if case == 'semantic_fpn' else 1.0), (key, found)
    if case == 'retinanet_caformer':
        from mmpoolformer.checkpoint import load_checkpoint_file
        keys = load_checkpoint_file(str(ckpt))['state_dict']
        assert 'backbone.stages.2.blocks.0.token_mixer.qkv.weight' in keys
        assert 'backbone.stages.0.blocks.0.token_mixer.dwconv.weight' in keys
    # Evaluation of the same checkpoint on the same data is deterministic.
    for key in names:
        assert found[key] == pytest.approx(train_metrics[key], abs=1e-4), key
    pictures = glob.glob(str(tmp_path / '**' / '*.png'), recursive=True) + \
        glob.glob(str(tmp_path / '**' / '*.jpg'), recursive=True)
    assert len(pictures) >= 4, 'test.py --show-dir wrote no pictures'


@pytest.mark.slow
def test_segmentation_learns_the_background(shapes, tmp_path):
    """A longer (still small) run must beat chance: mIoU is really computed from predictions."""
    config, options, _ = CASES['semantic_fpn']
    opts = options(shapes, iters=30) + ['optim_wrapper.optimizer.lr=0.003']
    rc, log = run('tools/train.py', config, '--work-dir', str(tmp_path / 'w'),
                  '--cfg-options', *opts)
    assert rc == 0, log[-3000:]
    assert metrics(log)['aAcc'] > 60.0  # the background is most pixels


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_distributed_training(shapes, tmp_path):
    config, options, _ = CASES['retinanet']
    work_dir = tmp_path / 'dist'
    rc, log = run('-m', 'torch.distributed.run', '--nproc_per_node=2',
                  f'--master_port={free_port()}', 'tools/train.py', config, '--launcher',
                  'pytorch', '--work-dir', str(work_dir), '--cfg-options',
                  *options(shapes, iters=2))
    assert rc == 0, log[-4000:]
    assert 'Distributed training: True' in log and 'GPU number: 2' in log, log[-2000:]
    # One checkpoint, saved once: only rank 0 writes.
    assert glob.glob(str(work_dir / '*.pth')) == [str(work_dir / 'iter_2.pth')]
    assert log.count('Saving checkpoint at 2 iterations') == 1
    from mmpoolformer.checkpoint import load_checkpoint_file
    state = load_checkpoint_file(str(work_dir / 'iter_2.pth'))
    assert state['meta']['iter'] == 2


@pytest.mark.parametrize('config,needle', [
    ('configs/retinanet_poolformer_s12.py', 'cocodataset.org'),
    ('configs/semantic_fpn_poolformer_s12.py', 'ADEChallengeData2016'),
])
def test_missing_dataset_is_one_clear_message(tmp_path, config, needle):
    rc, log = run(osp.join(REPO, 'tools/train.py'), osp.join(REPO, config), '--work-dir',
                  str(tmp_path / 'w'), cwd=tmp_path)
    assert rc == 1
    assert 'Traceback' not in log
    assert 'ERROR: Dataset not found: data/' in log and needle in log
    assert 'make_shapes.py' in log


def test_a_config_whose_attention_cannot_fit_stops_before_training(shapes, tmp_path):
    """Attention with dropout at stride 4 of 1333x800 images: refused when built."""
    config = tmp_path / 'too_big.py'
    config.write_text(
        f"_base_ = ['{REPO}/configs/quickstart/retinanet_poolformer_s12_shapes.py']\n"
        "model = dict(backbone=dict(type='CAFormer', arch='s18', token_mixers=[\n"
        "    dict(type='Attention', attn_drop=0.1)] * 4))\n")
    opts = [o for o in det_options(shapes) if 'pipeline' not in o]
    rc, log = run('tools/train.py', str(config), '--work-dir', str(tmp_path / 'w'),
                  '--cfg-options', *opts, 'train_dataloader.dataset.pipeline.2.scale=(1333,800)')
    assert rc == 1 and 'Traceback' not in log, log[-3000:]
    assert re.search(r'ERROR: CAFormer: a batch of 2 at 800x1344 needs [\d.]+ GiB', log)
    assert 'checked at build time' in log and 'Epoch' not in log and 'Iter(train)' not in log


@pytest.mark.slow
def test_out_saves_the_detection_predictions_as_a_pickle(shapes, tmp_path, tmp_path_factory):
    trained = trained_run('retinanet', shapes, tmp_path_factory)
    out = tmp_path / 'preds' / 'retinanet.pkl'
    rc, log = run('tools/test.py', trained['config'], str(trained['checkpoint']), '--out',
                  str(out), '--work-dir', str(tmp_path / 'test'), '--cfg-options',
                  *trained['options'])
    assert rc == 0, log[-3000:]
    # Both of the config's metrics still run next to the dump.
    assert 'coco/bbox_mAP' in metrics(log) and 'drawn/correct' in log, log[-2000:]
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    ann = json.loads((shapes / 'coco/annotations/instances_val2017.json').read_text())
    assert sorted(p['img_id'] for p in preds) == sorted(i['id'] for i in ann['images'])
    for pred in preds:
        assert 'gt_instances' not in pred
        assert tuple(pred['ori_shape']) == (SIZE, SIZE)
        inst = pred['pred_instances']
        n = len(inst['scores'])
        # score_thr 0 (the run's options): every box that survives NMS, at most 100.
        assert 0 < n <= 100
        assert inst['bboxes'].shape == (n, 4) and inst['labels'].shape == (n, )
        assert ((inst['scores'] >= 0) & (inst['scores'] <= 1)).all()
        assert inst['scores'].tolist() == sorted(inst['scores'].tolist(), reverse=True)
        assert set(inst['labels'].tolist()) <= {0, 1, 2}
        boxes = inst['bboxes']
        assert (boxes[:, :2] >= -1e-3).all() and (boxes[:, 2:] <= SIZE + 1e-3).all()
        assert (boxes[:, 2:] >= boxes[:, :2]).all()
    # Evaluated offline (as mmdet's tools/analysis_tools/eval_metric.py does), the pickle
    # gives the metrics that tools/test.py printed.
    from mmengine.evaluator import Evaluator
    from mmengine.registry import DefaultScope
    ann_file = str(shapes / 'coco/annotations/instances_val2017.json')
    with DefaultScope.overwrite_default_scope('mmdet'):  # other tests may have set mmseg
        evaluator = Evaluator([dict(m, ann_file=ann_file)
                               for m in Config.fromfile(trained['config']).test_evaluator])
    evaluator.dataset_meta = dict(classes=('circle', 'square', 'triangle'))
    again = evaluator.offline_evaluate(preds)
    printed = dict(re.findall(r'(drawn/\w+): ([\d.]+)', log), **metrics(log))
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'drawn/correct', 'drawn/errors'):
        assert again[key] == pytest.approx(float(printed[key]), abs=1e-4), key


@pytest.mark.slow
def test_out_saves_one_segmentation_map_per_image(shapes, tmp_path, tmp_path_factory):
    trained = trained_run('semantic_fpn', shapes, tmp_path_factory)
    out = tmp_path / 'preds'
    rc, log = run('tools/test.py', trained['config'], str(trained['checkpoint']), '--out',
                  str(out), '--work-dir', str(tmp_path / 'test'), '--cfg-options',
                  *trained['options'])
    assert rc == 0, log[-3000:]
    assert 'mIoU' in metrics(log), log[-2000:]
    val = shapes / 'ade/ADEChallengeData2016/images/validation'
    names = sorted(osp.splitext(p.name)[0] for p in val.glob('*.jpg'))
    assert sorted(osp.splitext(p.name)[0] for p in out.iterdir()) == names
    for path in out.iterdir():
        label = np.asarray(Image.open(path))
        assert path.suffix == '.png' and label.shape == (SIZE, SIZE)
        # ADE's convention, as the annotations: 1-4 for the four classes (0 = unlabelled).
        assert set(np.unique(label).tolist()) <= {1, 2, 3, 4}


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/test.py')


COCO = dict(type='CocoMetric', ann_file='a.json')
ERRORS = dict(type='mmpoolformer.DetectionErrorMetric', ann_file='a.json')
DUMP = dict(type='DumpDetResults', out_file_path='p.pkl')


@pytest.mark.parametrize('evaluator,expected', [
    ([COCO, ERRORS], [COCO, ERRORS, DUMP]),  # the detection quickstarts' form
    (COCO, [COCO, DUMP]),
    (dict(type='Evaluator', metrics=[COCO]), dict(type='Evaluator', metrics=[COCO, DUMP])),
])
def test_out_adds_the_dump_to_every_form_of_detection_evaluator(tool, evaluator,
                                                                expected):
    cfg = Config(dict(default_scope='mmdet', test_evaluator=evaluator))
    tool.add_prediction_dump(cfg, 'p.pkl')
    assert Config(dict(e=cfg.test_evaluator)).to_dict()['e'] == expected


@pytest.mark.parametrize('evaluator', [
    dict(type='IoUMetric'), [dict(type='IoUMetric'), dict(type='IoUMetric', prefix='b')]])
def test_out_gives_every_segmentation_metric_the_output_dir(tool, evaluator):
    cfg = Config(dict(default_scope='mmseg', test_evaluator=evaluator))
    tool.add_prediction_dump(cfg, 'preds')
    got = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    assert len(got) == (len(evaluator) if isinstance(evaluator, list) else 1)
    assert all(m['output_dir'] == 'preds' and m['keep_results'] for m in got)


@pytest.mark.parametrize('config,out,needle', [
    ('configs/quickstart/retinanet_poolformer_s12_shapes.py', 'preds.json',
     'name a .pkl or .pickle file'),
    ('configs/quickstart/semantic_fpn_poolformer_s12_shapes.py', 'preds.pkl',
     'one PNG per image; name a directory'),
    ('configs/quickstart/semantic_fpn_poolformer_s12_shapes.py', 'a_file',
     'one PNG per image; name a directory'),
])
def test_a_wrong_out_is_one_error_line(tool, tmp_path, config, out, needle):
    (tmp_path / 'a_file').write_text('')
    with pytest.raises(SystemExit) as e:
        tool.main([osp.join(REPO, config), str(tmp_path / 'no.pth'), '--out',
                        str(tmp_path / out), '--work-dir', str(tmp_path / 'w')])
    message = str(e.value.code)
    assert message.startswith(f'ERROR: --out {tmp_path / out}: ') and needle in message
    assert '\n' not in message and not (tmp_path / 'w').exists()


def test_out_needs_a_detection_or_segmentation_config(tool):
    cfg = Config(dict(default_scope='mmpretrain', test_evaluator=dict(type='Accuracy')))
    with pytest.raises(SystemExit, match=r"^ERROR: --out needs .* default_scope 'mmpretrain'"):
        tool.add_prediction_dump(cfg, 'p.pkl')
