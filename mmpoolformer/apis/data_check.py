"""Fail fast, with one readable message, when a config's dataset is not on disk."""
import os.path as osp

HOW_TO_GET = {
    'coco': (
        'Get COCO 2017 from https://cocodataset.org (train2017.zip, val2017.zip,\n'
        'annotations_trainval2017.zip) and unpack it as\n'
        '    data/coco/annotations/instances_train2017.json\n'
        '    data/coco/annotations/instances_val2017.json\n'
        '    data/coco/train2017/*.jpg\n'
        '    data/coco/val2017/*.jpg\n'),
    'ade': (
        'Get ADE20K (ADEChallengeData2016.zip, the MIT Scene Parsing benchmark) and unpack '
        'it as\n'
        '    data/ade/ADEChallengeData2016/images/{training,validation}/*.jpg\n'
        '    data/ade/ADEChallengeData2016/annotations/{training,validation}/*.png\n'),
}
COMMON_HINT = (
    'Or point the config elsewhere, e.g. --cfg-options train_dataloader.dataset.data_root=...\n'
    'To try mmpoolformer without the real data, generate the synthetic shapes dataset:\n'
    '    python tools/dataset_converters/make_shapes.py data/shapes\n'
    'and use a config from configs/quickstart/.')


class DatasetNotFoundError(FileNotFoundError):
    pass


def _walk(dataset_cfg):
    """The dataset config and the datasets it wraps (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(dataset_cfg, dict):
        return
    yield dataset_cfg
    yield from _walk(dataset_cfg.get('dataset'))
    for inner in dataset_cfg.get('datasets') or []:
        yield from _walk(inner)


def _join(root, path):
    return path if not root or osp.isabs(path) else osp.join(root, path)


def _paths(dataset_cfg):
    root = dataset_cfg.get('data_root') or ''
    paths = [root] if root else []
    if dataset_cfg.get('ann_file'):
        paths.append(_join(root, dataset_cfg['ann_file']))
    for value in (dataset_cfg.get('data_prefix') or {}).values():
        if value:
            paths.append(_join(root, value))
    return paths


def _kind(cfg, dataset_type):
    if 'coco' in dataset_type.lower() or cfg.get('default_scope') == 'mmdet':
        return 'coco'
    return 'ade'


def check_datasets(cfg, splits=('train', 'val')):
    """Raise DatasetNotFoundError naming the first missing path and how to get the data."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or (split == 'val' and not cfg.get('val_cfg')):
            continue
        for dataset in _walk(loader.get('dataset')):
            ann_file = (cfg.get(f'{split}_evaluator') or {}).get('ann_file')
            for path in _paths(dataset) + ([ann_file] if isinstance(ann_file, str) else []):
                if '://' in path or osp.exists(path):
                    continue
                kind = _kind(cfg, str(dataset.get('type', '')))
                raise DatasetNotFoundError(
                    f'Dataset not found: {path}\n(needed by {split}_dataloader, '
                    f'{dataset.get("type")}).\n' + HOW_TO_GET[kind] + COMMON_HINT)
