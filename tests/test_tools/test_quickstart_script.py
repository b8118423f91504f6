"""tools/quickstart.sh: its options, and a whole (tiny) run of the segmentation quickstarts."""
import os
import os.path as osp
import re
import subprocess

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'quickstart.sh')


def quickstart(*args, env=None, timeout=600):
    """(exit status, stdout and stderr in the order written) of the script."""
    proc = subprocess.run(['bash', SCRIPT, *args], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout


TASK_ERROR = "ERROR: --task must be det, seg, ins or upernet, got '{}'"
SEED_ERROR = "ERROR: --seed needs a non-negative integer, got '{}'"


@pytest.mark.parametrize('args,error', [
    (['--task', 'panoptic'], TASK_ERROR.format('panoptic')),
    (['--seed', '1', '--task', 'box'], TASK_ERROR.format('box')),
    (['--task'], TASK_ERROR.format('')),
    (['--cfg-options', 'train_cfg.max_iters=2', '--task=Seg'], TASK_ERROR.format('Seg')),
    (['--task', 'seg', '--seed', '-1'], SEED_ERROR.format('-1')),
    (['--seed=x', '--task', 'ins'], SEED_ERROR.format('x')),
])
def test_a_bad_option_is_one_error_before_any_setup(args, error):
    rc, log = quickstart(*args)
    # Nothing else is printed: neither setup_env.sh nor any later step ran.
    assert (rc, log.strip()) == (2, error)


# Two iterations of batch 2 on 64 px crops, every image read in the main process.
SHRINK = [
    'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
    'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2',
    'train_dataloader.dataset.pipeline.2.scale=(128,64)',
    'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',
    'model.data_preprocessor.size=(64,64)', 'val_dataloader.dataset.pipeline.1.scale=(128,64)',
    'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False', 'val_dataloader.persistent_workers=False',
]


@pytest.mark.slow
@pytest.mark.parametrize('task,config', [('seg', 'semantic_fpn'), ('upernet', 'upernet')])
def test_segmentation_quickstart_trains_tests_draws_plots_and_reports(task, config, tmp_path):
    import cv2

    data, work = tmp_path / 'shapes', tmp_path / 'work'
    rc, log = quickstart('--seed', '3', '--task', task, '--cfg-options', *SHRINK, env=dict(
        QUICKSTART_DATA=str(data), WORK_DIR=str(work),
        QUICKSTART_SHAPES_ARGS='--num-train 4 --num-val 4 --size 64'))
    assert rc == 0, log[-4000:]
    # ADE20K's layout only, in the given root and at the given size.
    assert sorted(p.name for p in data.iterdir()) == ['.complete-seg.json', 'ade']
    val_images = data / 'ade' / 'ADEChallengeData2016' / 'images' / 'validation'
    assert cv2.imread(str(val_images / '000003.jpg')).shape == (64, 64, 3)
    # The task's config trained with the seed and the extra options.
    trained = (work / f'{config}_poolformer_s12_shapes.py').read_text()
    assert 'seed=3' in trained and 'max_iters=2' in trained
    assert (work / 'iter_2.pth').exists()
    # tools/test.py evaluated the 4 validation images of that root, not data/shapes.
    assert 'Iter(test) [4/4]' in log and re.search(r'mIoU: \d', log), log[-4000:]
    # The demo tiles its four validation images, each drawn at its 64 x 64 size.
    assert cv2.imread(str(work / 'predictions.png')).shape == (64, 4 * (64 + 4), 3)
    assert re.search(r'logged iterations up to 2, mIoU [\d.]+ at iteration 2: saved '
                     + re.escape(str(work / 'loss_plot.png')), log)
    assert (work / 'loss_plot.png').stat().st_size > 0
    # The report's line is the script's last output.
    last = log.strip().splitlines()[-1]
    assert re.fullmatch(r'2 iterations, [\d.]+ min of training, [\d.]+ s/iter, '
                        r'mIoU = \d+\.\d{3}', last), last
