import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import METRICS as ROOT_METRICS

from mmpoolformer.apis.data_check import DatasetNotFoundError, check_datasets
from mmpoolformer.evaluation import DetectionErrorMetric, count_errors

GT_BOXES = [[0, 0, 10, 10], [20, 20, 40, 40]]  # x1, y1, x2, y2
GT_LABELS = [0, 1]


def test_each_kind_of_drawn_box_is_counted():
    boxes = [[0, 0, 10, 10],    # right box, right class: correct
             [0, 0, 10, 11],    # same object, same class, lower score: duplicate
             [20, 20, 40, 41],  # second object, wrong class
             [60, 60, 70, 70],  # nothing there: background
             [20, 20, 40, 40]]  # below the score threshold: not drawn, not counted
    scores = [0.9, 0.8, 0.7, 0.5, 0.2]
    labels = [0, 0, 2, 1, 1]
    counts = count_errors(boxes, scores, labels, GT_BOXES, GT_LABELS, score_thr=0.3)
    # The second object got only a wrong-class box, so it is also missed.
    assert counts == dict(correct=1, duplicate=1, wrong_class=1, background=1, missed=1)


def test_the_higher_score_claims_the_object_and_thresholds_apply():
    # Listed low score first: the 0.9 box is the correct one, the 0.6 box the duplicate.
    counts = count_errors([[0, 0, 10, 12], [0, 0, 10, 10]], [0.6, 0.9], [0, 0],
                          GT_BOXES, GT_LABELS, score_thr=0.3)
    assert counts == dict(correct=1, duplicate=1, wrong_class=0, background=0, missed=1)
    # IoU 0.45 with the object: background at iou_thr 0.5, correct at 0.4.
    half = [[0, 0, 10, 4.5]]
    assert count_errors(half, [0.9], [0], GT_BOXES, GT_LABELS)['background'] == 1
    assert count_errors(half, [0.9], [0], GT_BOXES, GT_LABELS, iou_thr=0.4)['correct'] == 1
    # No ground truth: every drawn box is background; no box at all: every object missed.
    assert count_errors([[0, 0, 5, 5]], [0.5], [0], np.zeros((0, 4)), [])['background'] == 1
    assert count_errors(np.zeros((0, 4)), [], [], GT_BOXES, GT_LABELS)['missed'] == 2


def _coco_file(tmp_path):
    images = [dict(id=1, file_name='a.jpg', height=50, width=50),
              dict(id=2, file_name='b.jpg', height=50, width=50)]
    # COCO boxes are x, y, w, h; category ids 3 and 7 are the model's labels 0 and 1.
    anns = [dict(id=1, image_id=1, category_id=3, bbox=[0, 0, 10, 10], area=100, iscrowd=0),
            dict(id=2, image_id=1, category_id=7, bbox=[20, 20, 20, 20], area=400, iscrowd=0),
            dict(id=3, image_id=2, category_id=7, bbox=[5, 5, 30, 30], area=900, iscrowd=1)]
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(dict(images=images, annotations=anns, categories=[
        dict(id=3, name='a'), dict(id=7, name='b')])))
    return str(path)


def _sample(img_id, boxes, scores, labels):
    return dict(img_id=img_id, pred_instances=dict(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores), labels=torch.tensor(labels)))


def test_metric_reads_coco_ground_truth_and_sums_over_images(tmp_path):
    metric = ROOT_METRICS.build(dict(type='mmpoolformer.DetectionErrorMetric',
                                     ann_file=_coco_file(tmp_path)))
    assert isinstance(metric, DetectionErrorMetric)
    metric.process({}, [
        _sample(1, [[0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8], [0, 1]),  # both right
        _sample(2, [[5, 5, 35, 35]], [0.9], [1]),  # on a crowd box, which is ignored
    ])
    result = metric.evaluate(2)
    assert result == {'drawn/correct': 2, 'drawn/duplicate': 0, 'drawn/wrong_class': 0,
                      'drawn/background': 1, 'drawn/missed': 0, 'drawn/errors': 1,
                      'drawn/images_with_errors': 1, 'drawn/score_thr': 0.3}


def test_bad_thresholds_are_refused(tmp_path):
    with pytest.raises(ValueError, match='score_thr must be in'):
        DetectionErrorMetric(_coco_file(tmp_path), score_thr=1.5)


def test_data_check_reads_ann_files_of_every_evaluator(tmp_path):
    # A list of evaluators is valid in mmengine; each one's ann_file is checked.
    (tmp_path / 'img').mkdir()
    cfg = Config(dict(
        default_scope='mmdet',
        test_dataloader=dict(dataset=dict(type='CocoDataset', data_root=str(tmp_path),
                                          data_prefix=dict(img='img'))),
        test_evaluator=[dict(type='CocoMetric', ann_file=_coco_file(tmp_path)),
                        dict(type='mmpoolformer.DetectionErrorMetric',
                             ann_file=str(tmp_path / 'missing.json'))]))
    with pytest.raises(DatasetNotFoundError, match='missing.json'):
        check_datasets(cfg, ('test', ))
