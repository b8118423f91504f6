"""What a detection picture shows, counted over a whole validation set.

COCO's mAP averages over every score, so a model can score well while the boxes a user sees
(those above a drawing threshold) carry wrong classes. ``DetectionErrorMetric`` counts those
boxes: each prediction at or above ``score_thr``, taken in descending score order, is
matched to the ground-truth box it overlaps most (any class):

- ``correct``: IoU >= ``iou_thr``, same class, and that ground truth has no correct box yet;
- ``duplicate``: as correct, but the ground truth already has a higher-scoring correct box;
- ``wrong_class``: IoU >= ``iou_thr`` with a ground truth of another class;
- ``background``: no ground truth with IoU >= ``iou_thr``;
- ``missed``: ground-truth boxes that got no correct box.

``errors`` is the sum of the last four: zero means every picture drawn at ``score_thr``
shows exactly the right boxes with the right classes. ``images_with_errors`` counts the
images with any error; ``score_thr`` is reported with the counts.
"""
from typing import Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.fileio import get_local_path
from mmengine.logging import MMLogger

from ..registry import METRICS

KINDS = ('correct', 'duplicate', 'wrong_class', 'background', 'missed')


def count_errors(pred_boxes, pred_scores, pred_labels, gt_boxes, gt_labels,
                 score_thr: float = 0.3, iou_thr: float = 0.5) -> dict:
    """Counts of ``KINDS`` for one image (see the module docstring)."""
    from mmdet.structures.bbox import bbox_overlaps  # mmdet only when a metric runs
    counts = dict.fromkeys(KINDS, 0)
    keep = np.asarray(pred_scores) >= score_thr
    order = np.argsort(-np.asarray(pred_scores)[keep], kind='stable')
    boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)[keep][order]
    labels = np.asarray(pred_labels)[keep][order]
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels)
    found = np.zeros(len(gt_boxes), dtype=bool)
    ious = bbox_overlaps(torch.from_numpy(boxes), torch.from_numpy(gt_boxes)).numpy()
    for i, label in enumerate(labels):
        j = int(np.argmax(ious[i])) if ious.shape[1] else -1
        if j < 0 or ious[i, j] < iou_thr:
            counts['background'] += 1
        elif gt_labels[j] != label:
            counts['wrong_class'] += 1
        elif found[j]:
            counts['duplicate'] += 1
        else:
            found[j] = True
            counts['correct'] += 1
    counts['missed'] = int((~found).sum())
    return counts


@METRICS.register_module()
class DetectionErrorMetric(BaseMetric):
    """Counts of the boxes drawn at ``score_thr`` that are right or wrong (module docstring).

    Ground truth comes from the COCO-format ``ann_file`` (crowd boxes are ignored), as for
    mmdet's ``CocoMetric``; predictions are in original image coordinates.
    """
    default_prefix: Optional[str] = 'drawn'

    def __init__(self, ann_file: str, score_thr: float = 0.3, iou_thr: float = 0.5,
                 collect_device: str = 'cpu', prefix: Optional[str] = None,
                 backend_args: Optional[dict] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not 0 <= score_thr <= 1 or not 0 < iou_thr <= 1:
            raise ValueError(f'score_thr must be in [0, 1] and iou_thr in (0, 1], got '
                             f'score_thr={score_thr}, iou_thr={iou_thr}')
        from pycocotools.coco import COCO
        with get_local_path(ann_file, backend_args=backend_args) as local:
            self._coco = COCO(local)
        # COCO category ids in sorted order are the model's labels 0..K-1, as in CocoMetric.
        self._label_of = {c: i for i, c in enumerate(sorted(self._coco.getCatIds()))}
        self.score_thr, self.iou_thr = score_thr, iou_thr

    def _ground_truth(self, img_id):
        anns = [a for a in self._coco.loadAnns(self._coco.getAnnIds(imgIds=[img_id]))
                if not a.get('iscrowd', 0)]
        boxes = np.array([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                           a['bbox'][1] + a['bbox'][3]] for a in anns]).reshape(-1, 4)
        return boxes, np.array([self._label_of[a['category_id']] for a in anns])

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample['pred_instances']
            gt_boxes, gt_labels = self._ground_truth(sample['img_id'])
            self.results.append(count_errors(
                pred['bboxes'].cpu().numpy(), pred['scores'].cpu().numpy(),
                pred['labels'].cpu().numpy(), gt_boxes, gt_labels,
                self.score_thr, self.iou_thr))

    def compute_metrics(self, results: list) -> dict:
        totals = {k: sum(r[k] for r in results) for k in KINDS}
        totals['errors'] = sum(totals[k] for k in KINDS[1:])
        totals['images_with_errors'] = sum(
            any(r[k] for k in KINDS[1:]) for r in results)
        totals['score_thr'] = self.score_thr  # logged with the counts, for reports
        MMLogger.get_current_instance().info(
            f'boxes drawn at score >= {self.score_thr} on {len(results)} images: ' +
            ', '.join(f'{k} {v}' for k, v in totals.items() if k != 'score_thr'))
        return totals
