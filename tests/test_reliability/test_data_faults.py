"""Bad dataset files: the policy is to fail fast, naming each bad file, before the first
iteration (or test batch), with nothing written. The checks live in
mmpoolformer/apis/data_check.py and run in tools/train.py and tools/test.py.
"""
import json
import re

import mmcv
import pytest
import torch

from mmpoolformer.apis import image_file_problem

from .cli import config, run_batch, tiny_options
from .conftest import NUM_TRAIN, NUM_VAL

COCO, ADE = 'coco', 'ade/ADEChallengeData2016'


def truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


# ------------------------------------------------------------------- the file check itself
@pytest.mark.parametrize('name', [f'{COCO}/train2017/000000.jpg',
                                  f'{ADE}/annotations/training/000000.png'])
def test_image_file_problem_finds_every_cut(shapes, tmp_path, name):
    original = (shapes / name).read_bytes()
    target = tmp_path / 'f'
    target.write_bytes(original)
    assert image_file_problem(str(target)) is None
    # Cut anywhere after the format's signature (8 bytes for PNG), from inside the header
    # to just before the last byte.
    for end in sorted({8, 20, len(original) // 3, len(original) // 2, len(original) - 1}):
        target.write_bytes(original[:end])
        assert image_file_problem(str(target)) == 'truncated (its end marker is missing)', end
    target.write_bytes(b'')
    assert image_file_problem(str(target)) == 'empty file'
    target.write_text('<html>404 Not Found</html>')
    assert image_file_problem(str(target)) == "not an image (starts with b'<html>40')"
    assert image_file_problem(str(tmp_path / 'absent.jpg')) == 'missing'


def test_mmcv_decodes_a_truncated_jpeg_without_error(shapes):
    """Why the check exists: the pipeline's decoder hides this fault (the missing part of
    the picture comes out as flat grey), so training would silently use broken images."""
    data = (shapes / COCO / 'train2017' / '000000.jpg').read_bytes()
    image = mmcv.imfrombytes(data[:len(data) // 2])
    assert image is not None and image.shape[:2] == mmcv.imfrombytes(data).shape[:2]


# ------------------------------------------------------------------ through the tools
def drop(root):
    path = root / COCO / 'train2017' / '000003.jpg'
    path.unlink()
    return path, 'missing'


def cut_jpeg(root):
    path = root / COCO / 'train2017' / '000001.jpg'
    truncate(path, 0.6)
    return path, r'truncated \(its end marker is missing\)'


def text_as_jpeg(root):  # in the val split: checked before training starts, too
    path = root / COCO / 'val2017' / '000002.jpg'
    path.write_text('Moved Permanently')
    return path, r"not an image \(starts with b'Moved Pe'\)"


def cut_json(root):
    path = root / COCO / 'annotations' / 'instances_train2017.json'
    truncate(path, 0.5)
    return path, None


def ghost_image(root):
    """An annotation file entry (with a box, so it is not filtered out) for a file that was
    never there."""
    path = root / COCO / 'annotations' / 'instances_train2017.json'
    ann = json.loads(path.read_text())
    ann['images'].append(dict(id=999, file_name='ghost.jpg', width=64, height=64))
    ann['annotations'].append(dict(id=9999, image_id=999, category_id=1, iscrowd=0,
                                   bbox=[4, 4, 20, 20], area=400,
                                   segmentation=[[4, 4, 24, 4, 24, 24, 4, 24]]))
    path.write_text(json.dumps(ann))
    return root / COCO / 'train2017' / 'ghost.jpg', 'missing'


def cut_seg_map(root):
    path = root / ADE / 'annotations' / 'training' / '000002.png'
    truncate(path, 0.7)
    return path, r'truncated \(its end marker is missing\)'


# name: (damage, config case, tool)
FAULTS = {
    'missing image': (drop, 'retinanet', 'train'),
    'truncated image': (cut_jpeg, 'retinanet', 'train'),
    'text named .jpg': (text_as_jpeg, 'retinanet', 'train'),
    'malformed annotation JSON': (cut_json, 'retinanet', 'train'),
    'annotation refers to a missing image': (ghost_image, 'retinanet', 'train'),
    'truncated segmentation map': (cut_seg_map, 'semantic_fpn', 'train'),
    'test.py: text named .jpg': (text_as_jpeg, 'retinanet', 'test'),
}


@pytest.fixture(scope='module')
def runs(shapes, copy_shapes, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('data-runs')
    weights = tmp / 'weights.pth'  # test.py needs a checkpoint; the data fail first
    torch.save({'state_dict': {}}, weights)
    calls, expected = [], {}
    for name, (damage, case, tool) in FAULTS.items():
        root = copy_shapes(re.sub(r'\W+', '-', name))
        expected[name] = damage(root)
        argv = [config(case)] + ([weights] if tool == 'test' else [])
        argv += ['--work-dir', tmp / name, '--cfg-options', *tiny_options(case, root)]
        calls.append((tool, argv))
    # The clean data, through the same checks (0 iterations: only the checks run).
    calls.append(('train', [config('semantic_fpn'), '--work-dir', tmp / 'clean',
                            '--cfg-options', *tiny_options('semantic_fpn', shapes, 0)]))
    results = run_batch(calls, tmp)
    return dict(zip(list(FAULTS) + ['clean'], results)), expected, tmp


@pytest.mark.slow
@pytest.mark.parametrize('name', [n for n in FAULTS if n != 'malformed annotation JSON'])
def test_bad_file_stops_the_run_naming_it(runs, name):
    results, expected, tmp = runs
    status, message = results[name]
    path, problem = expected[name]
    assert status == 1, message
    assert re.search(rf'^    {re.escape(str(path))}: {problem}$', message, re.M), message
    assert message.startswith('ERROR: 1 of the ')
    assert 'Each must be a complete JPEG, PNG, BMP, TIFF or WebP file.' in message
    # Fail fast: no iteration was logged, no checkpoint written.
    assert not list((tmp / name).glob('**/scalars.json'))
    assert not list((tmp / name).glob('*.pth'))


@pytest.mark.slow
def test_malformed_annotation_json_is_named(runs):
    results, expected, _ = runs
    status, message = results['malformed annotation JSON']
    path, _ = expected['malformed annotation JSON']
    assert status == 1, message
    assert re.fullmatch(rf'ERROR: annotation file {re.escape(str(path))} is not valid JSON: '
                        r'.* line \d+ column \d+ \(char \d+\)\. A COCO-style .*', message)


@pytest.mark.slow
def test_clean_data_pass_the_same_checks(runs):
    results, _, tmp = runs
    assert results['clean'] == (0, ''), results['clean']
    log = next((tmp / 'clean').glob('*/*.log')).read_text()
    # An image and a segmentation map per sample.
    assert f'the {2 * NUM_TRAIN} files of the train dataset are complete images' in log
    assert f'the {2 * NUM_VAL} files of the val dataset are complete images' in log
