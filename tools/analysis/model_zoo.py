"""The model zoo: OpenMMLab metafiles (model-index.yml) and the README's table from them.

    python tools/analysis/model_zoo.py [--out TABLE.md]     # print the markdown table
    python tools/analysis/model_zoo.py --update             # recount params/FLOPs first
    python tools/analysis/model_zoo.py --check              # metafile params up to date?

Every top-level config (``configs/*.py``) gets a row, whether or not the metafile has an
entry for it yet: task and dataset from the config, the paper's metric from the metafile
('-' where the paper has none), parameters and FLOPs from the metafile, the pretrained
backbone from the config's ``init_cfg``, and the commands to train and test it.
``--update`` counts parameters and FLOPs with tools/analysis/get_flops.py (1280 x 800 for
detection, 512 x 512 for segmentation; minutes on a CPU) and writes them into the
metafile, adding an entry for any config that lacks one and dropping the entries of
configs that no longer exist. ``--check`` recounts the
parameters only (no forward pass) and fails if any entry is missing or stale.
"""
import argparse
import functools
import glob
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # get_flops, beside this file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HEADER = """\
# OpenMMLab metafile of mmpoolformer's configs (imported by model-index.yml, read by mim).
# Results are the published figures of the papers (no weights trained with this package
# are released yet). Parameters and FLOPs are counted by tools/analysis/get_flops.py
# (detection at 1280x800, segmentation at 512x512) and written by
# `python tools/analysis/model_zoo.py --update`, which rewrites this file (comments
# other than this header are not kept).
"""
TASKS = {'mmdet': 'Object Detection', 'mmseg': 'Semantic Segmentation'}
SHORT = {'Object Detection': 'detection', 'Instance Segmentation': 'instance seg.',
         'Semantic Segmentation': 'semantic seg.'}
DATASETS = {'CocoDataset': 'COCO', 'ADE20KDataset': 'ADE20K'}


def read_yaml(path):
    import yaml
    with open(path) as f:
        return yaml.safe_load(f) or {}


def metafiles(root: str) -> list:
    """The metafiles that ``root``/model-index.yml imports."""
    index = osp.join(root, 'model-index.yml')
    if not osp.isfile(index):
        raise FileNotFoundError(f'no model-index.yml in {root}')
    return [osp.join(root, p) for p in read_yaml(index).get('Import', [])]


def load_models(root: str):
    """(metafile path -> its content, config path -> (metafile path, model entry))."""
    files, models = {}, {}
    for path in metafiles(root):
        content = read_yaml(path)
        files[path] = content
        for model in content.get('Models') or []:
            models[model['Config']] = (path, model)
    return files, models


def top_level_configs(root: str) -> list:
    return sorted(osp.relpath(p, root) for p in glob.glob(osp.join(root, 'configs', '*.py')))


@functools.lru_cache(maxsize=None)  # loading a config takes ~0.5 s
def describe(root: str, config: str) -> dict:
    """What the config itself says: task, dataset, backbone, pretrained weights."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(root, config))
    scope = cfg.get('default_scope', 'mmdet')
    backbone = cfg.model.backbone
    init = backbone.get('init_cfg') or {}
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:  # wrappers (RepeatDataset, ...)
        dataset = dataset.dataset
    tasks = [TASKS.get(scope, scope)]
    if cfg.model.get('roi_head', {}).get('mask_head'):
        tasks.append('Instance Segmentation')
    return dict(
        scope=scope, tasks=tasks, backbone=backbone.type,
        dataset=DATASETS.get(dataset.type, dataset.type),
        pretrained=init.get('checkpoint') if init.get('type') == 'Pretrained' else None,
        epochs=cfg.train_cfg.get('max_epochs'), iters=cfg.train_cfg.get('max_iters'),
        batch=cfg.get('auto_scale_lr', {}).get('base_batch_size'))


def new_entry(config: str, info: dict) -> dict:
    """A metafile entry for a config that has none: facts from the config, no results."""
    meta = {'Training Data': info['dataset']}
    if info['epochs']:
        meta['Epochs'] = info['epochs']
    if info['iters']:
        meta['Iterations'] = info['iters']
    if info['batch']:
        meta['Batch Size'] = info['batch']
    return {'Name': osp.splitext(osp.basename(config))[0], 'In Collection': info['backbone'],
            'Config': config, 'Metadata': meta}


def update(root: str, configs: list, shape=None) -> dict:
    """Count params and FLOPs of every config and write them into the metafiles."""
    import get_flops
    from mmengine.utils import track_iter_progress
    files, models = load_models(root)
    default_file = metafiles(root)[0]
    for config in track_iter_progress(configs):
        result = get_flops.complexity(get_flops.load(osp.join(root, config)), shape)
        if config in models:
            path, entry = models[config]
        else:
            path, entry = default_file, new_entry(config, describe(root, config))
            files[path].setdefault('Models', []).append(entry)
            collections = files[path].setdefault('Collections', [])
            if not any(c['Name'] == entry['In Collection'] for c in collections):
                collections.append({'Name': entry['In Collection']})
            models[config] = (path, entry)
        entry.setdefault('Metadata', {})
        entry['Metadata']['Parameters'] = int(result['params'])
        entry['Metadata']['FLOPs'] = int(result['flops'])
    for path, content in files.items():
        gone = [m for m in content.get('Models') or []
                if not osp.isfile(osp.join(root, m['Config']))]
        for model in gone:
            print(f'dropping the entry of {model["Config"]}: the config no longer exists')
            content['Models'].remove(model)
        write_metafile(path, content)
    return models


def write_metafile(path: str, content: dict):
    import yaml
    content['Models'] = sorted(content.get('Models') or [], key=lambda m: m['Config'])
    text = yaml.safe_dump(content, sort_keys=False, width=99, allow_unicode=True)
    with open(path, 'w') as f:
        f.write(HEADER + text)


def check(root: str, configs: list) -> list:
    """Problems: configs without an entry, entries whose parameter count is stale."""
    import get_flops
    _, models = load_models(root)
    problems = []
    for config in configs:
        if config not in models:
            problems.append(f'{config}: no metafile entry')
            continue
        recorded = models[config][1].get('Metadata', {}).get('Parameters')
        counted = get_flops.complexity(get_flops.load(osp.join(root, config)),
                                       flops=False)['params']
        if recorded != counted:
            problems.append(f'{config}: metafile says {recorded} parameters, the model has '
                            f'{counted}')
    return problems


def paper_metric(entry) -> str:
    if not entry or not entry.get('Results'):
        return '-'
    parts = []
    for result in entry['Results']:
        parts += [f'{name} {value}' for name, value in result['Metrics'].items()]
    return ', '.join(parts)


def millions(value, unit=1e6):
    return '-' if value is None else f'{value / unit:.1f}'


def table(root: str, configs: list) -> str:
    _, models = load_models(root)
    rows = [
        "| config | task | params (M) | FLOPs (G) | paper's result | pretrained backbone | "
        'train / test |',
        '|---|---|---|---|---|---|---|',
    ]
    described = {config: describe(root, config) for config in configs}
    # Detection, then instance segmentation, then semantic segmentation; rows with the
    # paper's results first; smaller models first.
    def order_key(config):
        entry = models.get(config, (None, None))[1]
        params = (entry or {}).get('Metadata', {}).get('Parameters') or 0
        return described[config]['tasks'], paper_metric(entry) == '-', params, config

    order = sorted(configs, key=order_key)
    for config in order:
        info = described[config]
        entry = models.get(config, (None, None))[1]
        meta = (entry or {}).get('Metadata', {})
        name = osp.splitext(osp.basename(config))[0]
        pretrained = f'[{osp.basename(info["pretrained"])}]({info["pretrained"]})' \
            if info['pretrained'] else '- (from scratch)'
        commands = f'`python tools/train.py {config}`<br>' \
                   f'`python tools/test.py {config} CKPT`'
        task = ' + '.join(SHORT.get(t, t) for t in info['tasks'])
        rows.append(f'| [{name}]({config}) | {task}, {info["dataset"]} | '
                    f'{millions(meta.get("Parameters"))} | '
                    f'{millions(meta.get("FLOPs"), 1e9)} | {paper_metric(entry)} | '
                    f'{pretrained} | {commands} |')
    return '\n'.join(rows) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--update', action='store_true',
                        help='count params and FLOPs (get_flops) and write the metafiles')
    parser.add_argument('--check', action='store_true',
                        help='fail if a config has no entry or a stale parameter count')
    parser.add_argument('--out', help='write the table to this file instead of stdout')
    parser.add_argument('--root', default=REPO, help='repository root (default: this one)')
    args = parser.parse_args(argv)
    import mmpoolformer  # noqa: F401  registers the backbones
    try:
        configs = top_level_configs(args.root)
        if args.check:
            problems = check(args.root, configs)
            if problems:
                sys.exit('ERROR: the metafile is out of date (run tools/analysis/'
                         'model_zoo.py --update): ' + '; '.join(problems))
            print(f'{len(configs)} configs, metafile parameters up to date')
            return
        if args.update:
            update(args.root, configs)
        text = table(args.root, configs)
    except FileNotFoundError as e:
        sys.exit(f'ERROR: {e}')
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
        print(f'saved {args.out}')
    else:
        print(text, end='')


if __name__ == '__main__':
    main()
