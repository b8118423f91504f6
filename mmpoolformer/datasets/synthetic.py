"""A small synthetic "shapes" dataset in COCO's and ADE20K's on-disk layouts.

Every image shows 1 to ``max_objects`` filled shapes (circle, square, triangle) of varied
size and colour on a textured background (smooth colour noise, stripes and pixel noise).
Shapes do not overlap, so each instance mask is exactly its drawn polygon. Everything is
deterministic from the seed: image ``i`` of a split depends only on (seed, split, i).

Layouts written (mirroring the real datasets so configs change only their data root)::

    <root>/coco/train2017/*.jpg, val2017/*.jpg
    <root>/coco/annotations/instances_{train2017,val2017}.json   boxes, polygons and RLE
    <root>/ade/ADEChallengeData2016/images/{training,validation}/*.jpg
    <root>/ade/ADEChallengeData2016/annotations/{training,validation}/*.png

Segmentation labels follow ADE20K's convention (0 = unlabelled, reduced away by
``reduce_zero_label=True``): 1 background, 2 circle, 3 square, 4 triangle.
"""
import json
import os
import os.path as osp
from dataclasses import dataclass

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', ) + CLASSES
SEG_PALETTE = [[60, 60, 60], [220, 20, 60], [0, 130, 230], [250, 170, 30]]
SPLITS = {'train': ('train2017', 'training'), 'val': ('val2017', 'validation')}


@dataclass
class ShapeInstance:
    label: int  # index into CLASSES
    polygon: np.ndarray  # (N, 2) int32 vertices, x then y
    mask: np.ndarray  # (H, W) bool

    @property
    def bbox(self):
        ys, xs = np.nonzero(self.mask)
        x0, y0 = int(xs.min()), int(ys.min())
        return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


def _textured_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour noise + random stripes + pixel noise, uint8 (H, W, 3)."""
    coarse = rng.uniform(40, 215, size=(rng.integers(3, 7), rng.integers(3, 7), 3))
    img = cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    img += stripes[..., None] * rng.uniform(5, 25, size=3).astype(np.float32)
    img += rng.normal(0, rng.uniform(4, 14), size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _polygon(label: int, x0: float, y0: float, size: float, rng) -> np.ndarray:
    cx, cy, r = x0 + size / 2, y0 + size / 2, size / 2
    if label == 0:  # circle as a fine polygon, so mask and polygon agree
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    elif label == 1:  # square, rotated
        t = np.array([0.25, 0.75, 1.25, 1.75]) * np.pi + rng.uniform(0, np.pi / 2)
    else:  # triangle, rotated
        t = np.array([0, 2 / 3, 4 / 3]) * np.pi + rng.uniform(0, 2 * np.pi)
    pts = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    return np.round(pts).astype(np.int32)


def render_scene(rng: np.random.Generator, height: int = 256, width: int = 256,
                 max_objects: int = 4, min_size: int = 28, max_size: int = 96):
    """One image (H, W, 3 uint8, BGR) and its list of ShapeInstance."""
    img = _textured_background(rng, height, width)
    boxes, instances = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(30):
            size = float(rng.uniform(min_size, min(max_size, height, width)))
            x0, y0 = rng.uniform(0, width - size), rng.uniform(0, height - size)
            box = (x0 - 2, y0 - 2, x0 + size + 2, y0 + size + 2)
            if all(box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1]
                   for b in boxes):
                break
        else:
            continue  # no free place left
        label = int(rng.integers(len(CLASSES)))
        poly = _polygon(label, x0, y0, size, rng)
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [poly], 1)
        if mask.sum() < 16:
            continue
        color = rng.integers(0, 256, size=3)
        color[rng.integers(3)] = rng.choice([0, 255])  # saturated, distinct from backgrounds
        cv2.fillPoly(img, [poly], [int(c) for c in color])
        boxes.append(box)
        instances.append(ShapeInstance(label, poly, mask.astype(bool)))
    return img, instances


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(s) for s in rle['size']], 'counts': rle['counts'].decode('ascii')}


def _scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, list(SPLITS).index(split), index])


def generate(root: str, num_train: int = 400, num_val: int = 50, seed: int = 0,
             size: int = 256, tasks=('det', 'seg'), progress: bool = True) -> dict:
    """Write the dataset under ``root``; returns the paths written per task."""
    from mmengine.utils import ProgressBar
    written = {}
    for split, count in (('train', num_train), ('val', num_val)):
        coco_dir, ade_dir = SPLITS[split]
        det_img_dir = osp.join(root, 'coco', coco_dir)
        seg_img_dir = osp.join(root, 'ade', 'ADEChallengeData2016', 'images', ade_dir)
        seg_ann_dir = osp.join(root, 'ade', 'ADEChallengeData2016', 'annotations', ade_dir)
        for d, task in ((det_img_dir, 'det'), (seg_img_dir, 'seg'), (seg_ann_dir, 'seg')):
            if task in tasks:
                os.makedirs(d, exist_ok=True)
        images, annotations = [], []
        bar = ProgressBar(count) if progress else None
        for i in range(count):
            # Object sizes scale with the image: 28-96 px at 256 px.
            img, instances = render_scene(_scene_rng(seed, split, i), size, size,
                                          min_size=max(4, round(size * 28 / 256)),
                                          max_size=round(size * 96 / 256))
            name = f'{i:06d}'
            if 'det' in tasks:
                cv2.imwrite(osp.join(det_img_dir, name + '.jpg'), img,
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                images.append(dict(id=i + 1, file_name=name + '.jpg', height=size, width=size))
                for inst in instances:
                    # Circles carry RLE masks, the others polygons: both COCO forms occur.
                    segm = _rle(inst.mask) if inst.label == 0 else \
                        [inst.polygon.reshape(-1).astype(float).tolist()]
                    annotations.append(dict(
                        id=len(annotations) + 1, image_id=i + 1, category_id=inst.label + 1,
                        bbox=inst.bbox, area=float(inst.mask.sum()), iscrowd=0,
                        segmentation=segm))
            if 'seg' in tasks:
                cv2.imwrite(osp.join(seg_img_dir, name + '.jpg'), img,
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                label = np.ones((size, size), np.uint8)
                for inst in instances:
                    label[inst.mask] = inst.label + 2
                cv2.imwrite(osp.join(seg_ann_dir, name + '.png'), label)
            if bar is not None:
                bar.update()
        if bar is not None:
            print()
        if 'det' in tasks:
            ann_file = osp.join(root, 'coco', 'annotations', f'instances_{coco_dir}.json')
            os.makedirs(osp.dirname(ann_file), exist_ok=True)
            categories = [dict(id=k + 1, name=n, supercategory='shape')
                          for k, n in enumerate(CLASSES)]
            with open(ann_file, 'w') as f:
                json.dump(dict(images=images, annotations=annotations,
                               categories=categories), f)
            written.setdefault('det', []).append(ann_file)
        if 'seg' in tasks:
            written.setdefault('seg', []).append(seg_ann_dir)
    for task in tasks:  # written last: an interrupted run is not taken as complete
        with open(_marker(root, task), 'w') as f:
            json.dump(dict(num_train=num_train, num_val=num_val, seed=seed, size=size), f)
    return written


def _marker(root: str, task: str) -> str:
    return osp.join(root, f'.complete-{task}.json')


def is_generated(root: str, tasks=('det', 'seg')) -> bool:
    """Whether ``generate`` has completed for these tasks under ``root``."""
    return all(osp.exists(_marker(root, t)) for t in tasks)
