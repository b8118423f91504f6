"""tools/analysis/model_zoo.py and the OpenMMLab metafiles (model-index.yml)."""
import glob
import os.path as osp
import shutil

import pytest
import yaml

from .tool_helpers import REPO, load_tool

CONFIGS = sorted(osp.relpath(p, REPO) for p in glob.glob(f'{REPO}/configs/*.py'))


@pytest.fixture(scope='module')
def zoo():
    return load_tool('tools/analysis/model_zoo.py')


@pytest.fixture(scope='module')
def flops():
    return load_tool('tools/analysis/get_flops.py')


def test_metafiles_are_in_the_openmmlab_format():
    index = yaml.safe_load(open(f'{REPO}/model-index.yml'))
    assert index['Import'], 'model-index.yml imports no metafile'
    for path in index['Import']:
        content = yaml.safe_load(open(osp.join(REPO, path)))
        collections = {c['Name']: c for c in content['Collections']}
        for c in collections.values():
            if 'Paper' in c:
                assert set(c['Paper']) == {'Title', 'URL'}
        for model in content['Models']:
            assert {'Name', 'In Collection', 'Config', 'Metadata'} <= set(model), model
            assert model['In Collection'] in collections
            assert osp.isfile(osp.join(REPO, model['Config'])), model['Config']
            assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
            meta = model['Metadata']
            assert meta['Training Data'] in ('COCO', 'ADE20K')
            assert isinstance(meta['Parameters'], int) and isinstance(meta['FLOPs'], int)
            for result in model.get('Results', []):
                assert set(result) == {'Task', 'Dataset', 'Metrics'}
                assert result['Dataset'] == meta['Training Data']
                assert all(isinstance(v, float) for v in result['Metrics'].values())


def test_every_config_has_an_up_to_date_parameter_count(zoo):
    assert zoo.check(REPO, CONFIGS) == []


def test_metafile_flops_are_get_flops_counts(zoo, flops):
    """One forward at the documented size: the smallest segmentor, 512 x 512."""
    _, models = zoo.load_models(REPO)
    config = 'configs/semantic_fpn_poolformer_s12.py'
    result = flops.complexity(flops.load(f'{REPO}/{config}'))
    assert result['shape'] == (512, 512)
    assert models[config][1]['Metadata']['FLOPs'] == result['flops']


def test_table_has_one_row_per_config(zoo):
    text = zoo.table(REPO, CONFIGS)
    rows = [r for r in text.splitlines()[2:] if r.startswith('| [')]
    assert len(rows) == len(CONFIGS)
    by_name = {r.split(']')[0][3:]: [c.strip() for c in r.split('|')[1:-1]] for r in rows}
    _, models = zoo.load_models(REPO)
    for config in CONFIGS:
        name = osp.splitext(osp.basename(config))[0]
        cells = by_name[name]
        assert cells[0] == f'[{name}]({config})'
        meta = models[config][1]['Metadata']
        assert cells[2] == f'{meta["Parameters"] / 1e6:.1f}'
        assert cells[3] == f'{meta["FLOPs"] / 1e9:.1f}'
        assert f'`python tools/train.py {config}`' in cells[6]
        assert f'`python tools/test.py {config} CKPT`' in cells[6]
    # The paper's figures where the paper has them, '-' elsewhere.
    assert by_name['retinanet_poolformer_s12'][4] == 'box AP 36.2'
    assert by_name['mask_rcnn_poolformer_s24'][4] == 'box AP 40.1, mask AP 37.0'
    assert by_name['semantic_fpn_poolformer_m48'][4] == 'mIoU 42.7'
    assert by_name['mask_rcnn_poolformer_s12'][1] == 'detection + instance seg., COCO'
    assert by_name['semantic_fpn_poolformer_s24'][1] == 'semantic seg., ADE20K'
    assert by_name['retinanet_poolformer_s36'][5] == (
        '[poolformer_s36.pth.tar](https://github.com/sail-sg/poolformer/releases/download/'
        'v1.0/poolformer_s36.pth.tar)')


def test_a_new_config_gets_a_row_and_update_writes_its_entry(zoo, flops, tmp_path):
    root = tmp_path / 'repo'
    shutil.copytree(f'{REPO}/configs/_base_', root / 'configs' / '_base_')
    shutil.copy(f'{REPO}/model-index.yml', root)
    shutil.copy(f'{REPO}/configs/metafile.yml', root / 'configs')
    for name in ('retinanet_poolformer_s12', 'semantic_fpn_poolformer_s12'):
        shutil.copy(f'{REPO}/configs/{name}.py', root / 'configs')
    new = 'configs/semantic_fpn_poolformer_s12_wide.py'
    (root / new).write_text("_base_ = './semantic_fpn_poolformer_s12.py'\n"
                            "model = dict(decode_head=dict(channels=256))\n")
    configs = zoo.top_level_configs(str(root))
    assert new in configs and len(configs) == 3
    row = next(r for r in zoo.table(str(root), configs).splitlines() if 's12_wide]' in r)
    cells = [c.strip() for c in row.split('|')[1:-1]]
    assert cells[2:5] == ['-', '-', '-']  # not counted yet, no paper result
    assert zoo.check(str(root), configs) == [f'{new}: no metafile entry']

    (root / 'configs' / 'retinanet_poolformer_s12.py').unlink()  # removed or renamed
    configs = zoo.top_level_configs(str(root))
    zoo.update(str(root), [new], shape=(64, 64))
    counted = flops.complexity(flops.load(str(root / new)), (64, 64))
    content = yaml.safe_load(open(root / 'configs' / 'metafile.yml'))
    entry = next(m for m in content['Models'] if m['Config'] == new)
    assert entry == {
        'Name': 'semantic_fpn_poolformer_s12_wide', 'In Collection': 'PoolFormer',
        'Config': new,
        'Metadata': {'Training Data': 'ADE20K', 'Iterations': 40000, 'Batch Size': 32,
                     'Parameters': counted['params'], 'FLOPs': counted['flops']}}
    assert counted['params'] > zoo.load_models(str(root))[1][
        'configs/semantic_fpn_poolformer_s12.py'][1]['Metadata']['Parameters']
    # Hand-written facts of the other entries survive the rewrite; entries of configs
    # that are gone (here: all but one) are dropped.
    old = yaml.safe_load(open(f'{REPO}/configs/metafile.yml'))
    assert content['Collections'] == old['Collections']
    kept = [m for m in old['Models'] if m['Config'] == 'configs/semantic_fpn_poolformer_s12.py']
    assert [m for m in content['Models'] if m['Config'] != new] == kept
    assert open(root / 'configs' / 'metafile.yml').read().startswith(zoo.HEADER)
    assert zoo.check(str(root), configs) == []
    entry_text = open(root / 'configs' / 'metafile.yml').read().replace(
        f'Parameters: {counted["params"]}', 'Parameters: 1')
    (root / 'configs' / 'metafile.yml').write_text(entry_text)
    assert zoo.check(str(root), [new]) == [
        f'{new}: metafile says 1 parameters, the model has {counted["params"]}']


def test_command_line(zoo, tmp_path, capsys):
    out = tmp_path / 'zoo.md'
    zoo.main(['--out', str(out)])
    assert capsys.readouterr().out.strip() == f'saved {out}'
    assert out.read_text() == zoo.table(REPO, CONFIGS)
    with pytest.raises(SystemExit, match=f'ERROR: no model-index.yml in {tmp_path}'):
        zoo.main(['--root', str(tmp_path)])


def test_readme_shows_the_generated_table(zoo):
    readme = open(osp.join(REPO, 'README.md')).read()
    start, end = '<!-- model-zoo:start -->\n', '\n<!-- model-zoo:end -->'
    shown = readme[readme.index(start) + len(start):readme.index(end)]
    assert shown.strip() == zoo.table(REPO, CONFIGS).strip(), \
        'README model zoo is stale: paste the output of tools/analysis/model_zoo.py'
