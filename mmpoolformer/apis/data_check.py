"""Fail fast, with one readable message, when a config's dataset is not on disk, when one
of its files is missing, truncated or not an image, or when an annotation file is not JSON.
"""
import json
import os
import os.path as osp
from concurrent.futures import ThreadPoolExecutor

from mmengine.hooks import Hook
from mmengine.runner import BaseLoop
from torch.utils.data import Dataset as TorchDataset

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


def walk_dataset_cfgs(dataset_cfg):
    """The dataset config and the datasets it wraps (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(dataset_cfg, dict):
        return
    yield dataset_cfg
    yield from walk_dataset_cfgs(dataset_cfg.get('dataset'))
    for inner in dataset_cfg.get('datasets') or []:
        yield from walk_dataset_cfgs(inner)


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


def _evaluator_ann_files(cfg, split):
    """The ann_file of each metric of ``{split}_evaluator`` (one metric or a list)."""
    evaluators = cfg.get(f'{split}_evaluator') or []
    if not isinstance(evaluators, (list, tuple)):
        evaluators = [evaluators]
    return [e['ann_file'] for e in evaluators
            if isinstance(e, dict) and isinstance(e.get('ann_file'), str)]


def check_datasets(cfg, splits=('train', 'val')):
    """Raise DatasetNotFoundError naming the first missing path and how to get the data."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or (split == 'val' and not cfg.get('val_cfg')):
            continue
        ann_files = _evaluator_ann_files(cfg, split)
        for dataset in walk_dataset_cfgs(loader.get('dataset')):
            for path in _paths(dataset) + ann_files:
                if '://' in path or osp.exists(path):
                    continue
                kind = _kind(cfg, str(dataset.get('type', '')))
                raise DatasetNotFoundError(
                    f'Dataset not found: {path}\n(needed by {split}_dataloader, '
                    f'{dataset.get("type")}).\n' + HOW_TO_GET[kind] + COMMON_HINT)


# ---------------------------------------------------------------------------- file checks
# Policy: fail fast. Before the first iteration (and before a test), every image and
# segmentation map the built datasets will read is checked; one bad file stops the run with
# a message naming it. Skipping is not offered: a silently smaller dataset changes results,
# and mmcv decodes a truncated JPEG without any error (the missing part comes out grey).

class DataError(ValueError):
    """Files of a dataset that cannot be used: missing, truncated or not an image."""


VALID_IMAGES = 'a complete JPEG, PNG, BMP, TIFF or WebP file'
_TAIL = 1024  # bytes read from the end of a file, to find its end marker
_MAX_LISTED = 5


def _jpeg_complete(size, tail):
    # Entropy-coded data cannot contain FF D9, so a JPEG cut anywhere loses its EOI marker;
    # the window tolerates padding or a short trailer after it, which decoders ignore.
    return b'\xff\xd9' in tail


def _png_complete(size, tail):
    # The IEND chunk is always these 12 bytes (length 0, type, CRC): a cut loses some.
    return b'\x00\x00\x00\x00IEND\xaeB`\x82' in tail


def _riff_complete(size, head):  # WebP: 'RIFF' <little-endian size of what follows>
    return int.from_bytes(head[4:8], 'little') + 8 <= size


def _bmp_complete(size, head):  # BMP: 'BM' <little-endian file size>
    return int.from_bytes(head[2:6], 'little') <= size


# (magic, what the head or tail must satisfy, which of them it reads)
_FORMATS = (
    (b'\xff\xd8\xff', _jpeg_complete, 'tail'),
    (b'\x89PNG\r\n\x1a\n', _png_complete, 'tail'),
    (b'BM', _bmp_complete, 'head'),
    (b'RIFF', _riff_complete, 'head'),
    (b'II*\x00', None, None),  # TIFF: no cheap completeness test
    (b'MM\x00*', None, None),
)


def image_file_problem(path: str):
    """Why ``path`` is not a readable image (a short phrase), or None if it is.

    Reads the first 16 and the last 1024 bytes only: about 70 us a file on the 2-core test
    machine (page cache warm), i.e. seconds for COCO's 118k training images.
    """
    try:
        with open(path, 'rb') as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(16)
            f.seek(max(size - _TAIL, 0))
            tail = f.read()
    except FileNotFoundError:
        return 'missing'
    except OSError as e:
        return f'unreadable ({e.strerror})'
    if size == 0:
        return 'empty file'
    for magic, complete, part in _FORMATS:
        if head.startswith(magic):
            if complete is not None and not complete(size, tail if part == 'tail' else head):
                return 'truncated (its end marker is missing)'
            return None
    return f'not an image (starts with {head[:8]!r})'


def _leaf_datasets(dataset):
    """The datasets inside wrappers (RepeatDataset, ConcatDataset, ClassBalanced...)."""
    inner = getattr(dataset, 'datasets', None) or [getattr(dataset, 'dataset', None)]
    inner = [d for d in inner if isinstance(d, TorchDataset)]
    if not inner:
        yield dataset
    for d in inner:
        yield from _leaf_datasets(d)


def dataset_files(dataset) -> list:
    """Local paths of every file the samples of ``dataset`` name (``img_path``,
    ``seg_map_path``, ...), without duplicates, in order."""
    files = {}
    for leaf in _leaf_datasets(dataset):
        if not hasattr(leaf, 'get_data_info'):
            continue  # not an mmengine dataset: its files are not listed anywhere
        if hasattr(leaf, 'full_init'):
            leaf.full_init()  # a no-op once loaded; loads lazy_init datasets
        for i in range(len(leaf)):
            for key, value in leaf.get_data_info(i).items():
                if key.endswith('_path') and isinstance(value, str) and '://' not in value:
                    files[value] = None
    return list(files)


def check_dataset_files(dataset, name: str, workers: int = 8) -> int:
    """Raise DataError listing the files of ``dataset`` that are not readable images.

    Returns the number of files checked. ``name`` says which dataset in the message.
    """
    files = dataset_files(dataset)
    # I/O bound (open, two reads): threads overlap the waits on slow disks.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = [(path, problem) for path, problem in
                    zip(files, pool.map(image_file_problem, files)) if problem]
    if problems:
        listed = '\n'.join(f'    {path}: {problem}' for path, problem in
                           problems[:_MAX_LISTED])
        more = len(problems) - _MAX_LISTED
        raise DataError(
            f'{len(problems)} of the {len(files)} files of the {name} dataset '
            f'({type(dataset).__name__}) cannot be read:\n{listed}'
            + (f'\n    ... and {more} more' if more > 0 else '')
            + f'\nEach must be {VALID_IMAGES}. Replace these files, or remove them and '
            f'their entries from the annotations.')
    return len(files)


class DataCheckHook(Hook):
    """Checks the files of the train/val/test datasets before the run starts.

    ``before_run`` comes after the Runner has built the loops it is about to use (train
    and val for ``train()``, test for ``test()``) and before weights are loaded, so a bad
    file stops the run within seconds and before anything is written.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        # The loops are read through the private attributes: the public properties would
        # build loops this run does not use (e.g. the train loop during test()).
        errors = []
        for name in ('train', 'val', 'test'):
            loop = getattr(runner, f'_{name}_loop', None)
            if isinstance(loop, BaseLoop):
                try:
                    count = check_dataset_files(loop.dataloader.dataset, name)
                except DataError as e:
                    errors.append(str(e))  # report the bad files of every split at once
                    continue
                runner.logger.info(f'DataCheckHook: the {count} files of the {name} dataset '
                                   f'are complete images')
        if errors:
            raise DataError('\n'.join(errors))


# ---------------------------------------------------------------------- annotation files
def _annotation_files(cfg):
    """The JSON annotation files a config reads: datasets' ann_file and evaluators'."""
    found = []
    for split in ('train', 'val', 'test'):
        for dataset in walk_dataset_cfgs((cfg.get(f'{split}_dataloader') or {}).get('dataset')):
            if dataset.get('ann_file'):
                found.append(_join(dataset.get('data_root') or '', dataset['ann_file']))
        found += _evaluator_ann_files(cfg, split)
    return [p for p in dict.fromkeys(found) if p.endswith('.json') and osp.isfile(p)]


def find_malformed_annotation(cfg):
    """A DataError naming the first JSON annotation file of ``cfg`` that does not parse,
    or None if all do.

    Called when building a dataset raised a JSON error: the COCO API and mmengine report
    the position of the error but not the file.
    """
    for path in _annotation_files(cfg):
        try:
            with open(path, encoding='utf-8') as f:
                json.load(f)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return DataError(f'annotation file {path} is not valid JSON: {e}. A COCO-style '
                             f'annotation file is one JSON object with "images", '
                             f'"annotations" and "categories"')
    return None
