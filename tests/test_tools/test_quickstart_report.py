"""tools/analysis/quickstart_report.py: time, s/iter, mAP and what the pictures show."""
import json

import pytest
from pycocotools.coco import COCO

from .tool_helpers import ITERS, load_tool, run, trained_run


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis/quickstart_report.py')


def test_summary_of_logged_scalars(tool, tmp_path, capsys):
    drawn = {'drawn/correct': 7, 'drawn/duplicate': 1, 'drawn/wrong_class': 2,
             'drawn/background': 0, 'drawn/missed': 3, 'drawn/errors': 6,
             'drawn/images_with_errors': 4, 'drawn/score_thr': 0.3}
    # As mmengine's LocalVisBackend writes them for an iteration-based loop: training
    # records carry 'iter' and the mean 'time' of their logging window.
    folder = tmp_path / '20260101_000000' / 'vis_data'
    folder.mkdir(parents=True)
    records = [dict(loss=1.0, time=0.5, iter=60, step=60),
               dict(loss=0.5, time=0.5, iter=120, step=120),
               {'coco/bbox_mAP': 0.5, **drawn, 'step': 120}]
    (folder / 'scalars.json').write_text(''.join(json.dumps(r) + '\n' for r in records))
    s = tool.main([str(tmp_path)])
    assert s['iters'] == 120 and s['sec_per_iter'] == pytest.approx(0.5)
    assert s['train_minutes'] == pytest.approx(1.0) and s['final_metric'] == 0.5
    out = capsys.readouterr().out
    assert '120 iterations, 1.0 min of training, 0.50 s/iter, coco/bbox_mAP = 0.500' in out
    assert ('boxes drawn at score >= 0.3 on the validation images: 7 correct; errors: '
            '2 wrong class, 1 duplicate, 0 on background, 3 objects missed '
            '(4 images with any error)') in out


@pytest.mark.slow
def test_report_of_a_real_run_counts_every_validation_object(tool, shapes, tmp_path_factory):
    # The quickstart config evaluates with DetectionErrorMetric next to COCO's mAP: every
    # validation object is either found (correct) or missed.
    trained = trained_run('retinanet', shapes, tmp_path_factory)
    rc, log = run('tools/analysis/quickstart_report.py', str(trained['work_dir']))
    assert rc == 0, log
    assert f'{ITERS} iterations' in log and 'boxes drawn at score >= 0.3' in log
    s = tool.summarise(tool.load_scalars(str(trained['work_dir'])), 'coco/bbox_mAP')
    objects = len(COCO(f'{shapes}/coco/annotations/instances_val2017.json').getAnnIds())
    assert objects > 0
    assert s['drawn']['correct'] + s['drawn']['missed'] == objects
    assert s['drawn']['score_thr'] == 0.3
