"""tools/analysis/plot_logs.py on mmengine's json scalars; the TensorBoard switch."""
import glob
import json
import re

import cv2
import pytest
from mmengine.visualization import LocalVisBackend

from .tool_helpers import ITERS, VAL_INTERVAL, load_tool, run, trained_run


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis/plot_logs.py')


def write_run(work_dir, timestamp, train, val=()):
    """Scalars as mmengine's LocalVisBackend writes them (train: step = iteration;
    validation: step = epoch, which is 0 for iteration-based loops)."""
    backend = LocalVisBackend(save_dir=str(work_dir / timestamp / 'vis_data'))
    for it, loss, lr in train:
        backend.add_scalars(dict(lr=lr, loss=loss, loss_cls=loss / 2, time=0.5), step=it)
    for metrics in val:
        backend.add_scalars(dict(metrics, time=0.1), step=0)


@pytest.mark.slow
def test_plot_of_a_real_training_run(tool, shapes, tmp_path_factory, tmp_path):
    trained = trained_run('retinanet', shapes, tmp_path_factory)
    work_dir = trained['work_dir']
    out = tmp_path / 'plot.png'
    rc, log = run('tools/analysis/plot_logs.py', str(work_dir), '--out', str(out))
    assert rc == 0, log
    train, val = tool.load_runs(str(work_dir))
    assert [r['iter'] for r in train] == list(range(1, ITERS + 1))  # logger interval 1
    assert all(r['loss'] > 0 and r['lr'] > 0 for r in train)
    # Evaluations sit at the iterations where they ran, with the values the log printed.
    assert [r['iter'] for r in val] == list(range(VAL_INTERVAL, ITERS + 1, VAL_INTERVAL))
    assert tool.pick_metric(val) == 'coco/bbox_mAP'
    printed = [float(v) for v in re.findall(r'coco/bbox_mAP: (-?[\d.]+)', trained['log'])]
    assert [r['coco/bbox_mAP'] for r in val] == pytest.approx(printed, abs=1e-3)
    assert f'{ITERS} logged iterations up to {ITERS}' in log and f'saved {out}' in log
    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape[1] > 2.5 * picture.shape[0]  # 3 panels
    assert picture.std() > 10 and out.stat().st_size < 150_000
    # The TensorBoard switch wrote event files next to the json the plot is made from.
    run_dirs = glob.glob(str(work_dir / '*' / 'vis_data'))
    assert len(run_dirs) == 1
    events = glob.glob(run_dirs[0] + '/events.out.tfevents.*')
    assert events, 'no TensorBoard event files: the switch did not take effect'
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(run_dirs[0])
    acc.Reload()
    loss = [e.value for e in acc.Scalars('loss')]
    assert loss == pytest.approx([r['loss'] for r in train], rel=1e-5)
    assert 'coco/bbox_mAP' in acc.Tags()['scalars']


def test_resumed_runs_are_joined_and_test_runs_ignored(tool, tmp_path):
    work = tmp_path / 'work'
    write_run(work, '20240101_000000', [(i, 3.0 - 0.1 * i, 1e-3) for i in (10, 20, 30)],
              [{'mIoU': 20.0, 'aAcc': 60.0}])
    # Resumed from iteration 20: iteration 30 is logged again, with the resumed value.
    write_run(work, '20240101_010000', [(i, 2.0 - 0.1 * i, 5e-4) for i in (30, 40)],
              [{'mIoU': 30.0, 'aAcc': 70.0}])
    write_run(work, '20240101_020000', [], [{'mIoU': 99.0}])  # tools/test.py run
    train, val = tool.load_runs(str(work))
    assert [(r['iter'], r['loss']) for r in train] == [
        (10, 2.0), (20, pytest.approx(1.0)), (30, pytest.approx(-1.0)),
        (40, pytest.approx(-2.0))]
    assert [(r['iter'], r['mIoU']) for r in val] == [(30, 20.0), (40, 30.0)]
    assert tool.pick_metric(val) == 'mIoU'
    out = tool.main([str(work)])
    assert out == str(work / 'loss_plot.png') and cv2.imread(out) is not None
    # Training again from scratch in the same work dir replaces the earlier runs.
    write_run(work, '20240102_000000', [(i, 1.0, 1e-3) for i in (10, 20)])
    train, val = tool.load_runs(str(work))
    assert [r['iter'] for r in train] == [10, 20] and val == []
    assert tool.pick_metric(val) is None
    tool.main([str(work)])  # loss and lr panels only


def test_epoch_based_evaluations_are_placed_at_their_iteration(tool, tmp_path):
    folder = tmp_path / 'run' / 'vis_data'
    folder.mkdir(parents=True)
    lines = [dict(lr=0.01, loss=1.0, step=50), dict(lr=0.01, loss=0.8, step=100),
             {'coco/bbox_mAP': 0.1, 'coco/segm_mAP': 0.09, 'step': 1},
             dict(lr=0.01, loss=0.6, step=150), dict(lr=0.01, loss=0.5, step=200),
             {'coco/bbox_mAP': 0.2, 'coco/segm_mAP': 0.19, 'step': 2}]
    (folder / 'scalars.json').write_text('\n'.join(json.dumps(x) for x in lines) + '\n')
    train, val = tool.load_runs(str(tmp_path))
    assert [r['iter'] for r in val] == [100, 200]
    assert tool.pick_metric(val) == 'coco/bbox_mAP'
    assert tool.pick_metric(val, 'coco/segm_mAP') == 'coco/segm_mAP'
    with pytest.raises(ValueError, match="metric 'mAP' was not logged; logged: "
                                         "coco/bbox_mAP, coco/segm_mAP"):
        tool.pick_metric(val, 'mAP')


def test_a_folder_without_logs_is_one_error_line(tmp_path):
    rc, log = run('tools/analysis/plot_logs.py', str(tmp_path))
    assert rc == 1 and 'Traceback' not in log
    assert log.strip() == f'ERROR: no <timestamp>/vis_data/scalars.json under {tmp_path}: ' \
                          f'is it the --work-dir of a tools/train.py run?'
