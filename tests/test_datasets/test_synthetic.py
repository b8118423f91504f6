import hashlib
import json
import os

import cv2
import numpy as np
from pycocotools.coco import COCO

from mmpoolformer.datasets import CLASSES, generate, is_generated


def digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            with open(os.path.join(dirpath, name), 'rb') as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def test_generation_is_deterministic_and_seeded(tmp_path):
    for name in ('a', 'b'):
        generate(str(tmp_path / name), num_train=3, num_val=2, seed=1, size=64,
                 progress=False)
    generate(str(tmp_path / 'c'), num_train=3, num_val=2, seed=2, size=64, progress=False)
    assert digest(tmp_path / 'a') == digest(tmp_path / 'b')
    assert digest(tmp_path / 'a') != digest(tmp_path / 'c')
    assert is_generated(str(tmp_path / 'a')) and not is_generated(str(tmp_path / 'd'))


def test_coco_annotations_match_the_pixels(tmp_path):
    generate(str(tmp_path), num_train=12, num_val=2, seed=0, size=128, progress=False,
             tasks=('det', ))
    coco = COCO(str(tmp_path / 'coco/annotations/instances_train2017.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    kinds, per_image = set(), []
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        per_image.append(len(anns))
        img = cv2.imread(str(tmp_path / 'coco/train2017' / coco.loadImgs(img_id)[0]['file_name']))
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            is_rle = isinstance(ann['segmentation'], dict)
            kinds.add('rle' if is_rle else 'polygon')
            ys, xs = np.nonzero(mask)
            x, y, w, h = ann['bbox']
            # RLE is the drawn mask itself; pycocotools rasterises polygons without the
            # boundary pixels that cv2 drew, so their boxes may differ by up to 2 px.
            tol = 0 if is_rle else 2
            box = np.array((x, y, x + w - 1, y + h - 1))
            assert np.abs(box - (xs.min(), ys.min(), xs.max(), ys.max())).max() <= tol
            assert abs(ann['area'] - mask.sum()) <= (0 if is_rle else 2 * (w + h))
            # A shape is one flat colour (up to JPEG noise away from its blended edges).
            interior = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            if interior.any():
                assert img[interior].astype(float).std(axis=0).max() < 12
    assert kinds == {'rle', 'polygon'}
    assert max(per_image) > 1 and min(per_image) >= 1


def test_segmentation_labels_follow_ade_convention(tmp_path):
    generate(str(tmp_path), num_train=4, num_val=1, seed=0, size=64, progress=False,
             tasks=('seg', ))
    ann_dir = tmp_path / 'ade/ADEChallengeData2016/annotations/training'
    values = set()
    for name in sorted(os.listdir(ann_dir)):
        label = cv2.imread(str(ann_dir / name), cv2.IMREAD_UNCHANGED)
        assert label.shape == (64, 64) and label.dtype == np.uint8
        values |= set(np.unique(label).tolist())
    assert 1 in values and values <= {1, 2, 3, 4} and len(values) >= 3
    with open(tmp_path / '.complete-seg.json') as f:
        assert json.load(f)['size'] == 64
