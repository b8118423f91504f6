"""demo/image_demo.py: predictions of a checkpoint drawn over generated images, as a PNG."""
import cv2
import numpy as np
import pytest

from .tool_helpers import REPO, run, trained_run


@pytest.fixture(scope='module')
def runs(shapes, tmp_path_factory):
    return lambda case: trained_run(case, shapes, tmp_path_factory)


def val_images(shapes, case, n=2):
    folder = {'retinanet': 'coco/val2017',
              'semantic_fpn': 'ade/ADEChallengeData2016/images/validation'}[case]
    return [str(shapes / folder / f'{i:06d}.jpg') for i in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize('case', ['retinanet', 'semantic_fpn'])
def test_demo_draws_predictions_into_a_png(case, runs, shapes, tmp_path):
    trained = runs(case)
    images = val_images(shapes, case)
    out = tmp_path / 'pictures' / 'demo.png'
    # After a few iterations no box scores above mmdet's 0.05 test threshold: keep the
    # five best, so that some boxes are drawn.
    extra = ['--score-thr', '0', '--cfg-options', 'model.test_cfg.score_thr=0.0',
             'model.test_cfg.max_per_img=5'] if case == 'retinanet' else []
    rc, log = run('demo/image_demo.py', *images, trained['config'], '--weights',
                  str(trained['checkpoint']), '--out-file', str(out), *extra)
    assert rc == 0, log[-3000:]
    assert f'saved {out}' in log
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    picture = cv2.imread(str(out))
    inputs = [cv2.imread(p) for p in images]
    h, w = inputs[0].shape[:2]
    # The images side by side, each followed by a 4-pixel white gap.
    assert picture.shape == (h, 2 * (w + 4), 3)
    assert picture.std() > 20  # not blank
    for i, image in enumerate(inputs):
        tile = picture[:, i * (w + 4):i * (w + 4) + w].astype(int)
        assert (picture[:, i * (w + 4) + w:(i + 1) * (w + 4)] == 255).all()
        changed = (np.abs(tile - image).max(axis=2) > 40).mean()
        if case == 'semantic_fpn':
            # mmseg's visualizer blends the class map over every pixel.
            assert changed > 0.5, changed
        else:
            # Boxes and labels over the picture, which stays visible around them.
            assert 0.02 < changed < 0.9, changed


def test_demo_refuses_a_missing_checkpoint_in_one_line(shapes, tmp_path):
    image = val_images(shapes, 'retinanet', 1)[0]
    out = tmp_path / 'x.png'
    rc, log = run('demo/image_demo.py', image,
                  f'{REPO}/configs/quickstart/retinanet_poolformer_s12_shapes.py',
                  '--weights', str(tmp_path / 'none.pth'), '--out-file', str(out))
    assert rc == 1 and 'Traceback' not in log
    assert log.strip().startswith('ERROR: checkpoint file not found') and not out.exists()
