"""A typo in a backbone (or neck) argument of a config is refused when the model is built,
with one line naming the key, suggesting the closest valid one and listing them all."""
import inspect
import re

import pytest
from mmengine.config import Config

from mmpoolformer.apis import ModelConfigError, check_component_args
from mmpoolformer.models import MetaFormer, PoolFormer
from mmpoolformer.registry import MODELS

from .cli import REPO, config, run_cli, tiny_options


def valid_args(cls):
    return [p for p in inspect.signature(cls.__init__).parameters if p != 'self']


@pytest.fixture(scope='module', params=['retinanet', 'semantic_fpn'])
def cfg(request):
    return Config.fromfile(f'{REPO}/{config(request.param)}')


def test_the_shipped_configs_pass(cfg):
    check_component_args(cfg.model, cfg.default_scope)


def test_backbone_typo_names_the_key_and_the_valid_ones(cfg):
    model = cfg.model.copy()
    model.backbone = dict(model.backbone, frozen_stage=1)
    with pytest.raises(ModelConfigError) as e:
        check_component_args(model, cfg.default_scope)
    assert str(e.value) == (
        "model.backbone: PoolFormer got unknown argument 'frozen_stage' (did you mean "
        f"'frozen_stages'?). Valid arguments: {', '.join(valid_args(PoolFormer))}")


def test_neck_typo_and_unknown_type(cfg):
    model = cfg.model.copy()
    model.neck = dict(model.neck, in_channel=[64])
    with pytest.raises(ModelConfigError, match=r"model\.neck: FPN got unknown argument "
                                               r"'in_channel' \(did you mean 'in_channels'"):
        check_component_args(model, cfg.default_scope)
    model = cfg.model.copy()
    model.backbone = dict(model.backbone, type='PoolFormr')
    with pytest.raises(ModelConfigError, match=rf"model\.backbone: unknown type 'PoolFormr' "
                                               rf"in the {cfg.default_scope} model registry "
                                               r"\(did you mean 'PoolFormer'\?\)"):
        check_component_args(model, cfg.default_scope)


def test_no_backbone_of_this_package_swallows_unknown_arguments():
    """The check above skips classes taking **kwargs; none of ours may (new families too)."""
    ours = [cls for cls in MODELS.module_dict.values()
            if inspect.isclass(cls) and issubclass(cls, MetaFormer)]
    assert PoolFormer in ours
    for cls in ours:
        kinds = [p.kind for p in inspect.signature(cls.__init__).parameters.values()]
        assert inspect.Parameter.VAR_KEYWORD not in kinds, cls.__name__


@pytest.mark.slow
def test_typo_through_the_command_line(shapes, tmp_path):
    status, log = run_cli('tools/train.py', config('retinanet'), '--work-dir', tmp_path,
                          '--cfg-options', *tiny_options('retinanet', shapes),
                          'model.backbone.frozen_stage=1')
    assert status == 1, log[-3000:]
    assert 'Traceback' not in log
    assert re.fullmatch(r"ERROR: model\.backbone: PoolFormer got unknown argument "
                        r"'frozen_stage' \(did you mean 'frozen_stages'\?\)\. Valid "
                        r"arguments: .*\bfrozen_stages\b.*", log.strip().splitlines()[-1])
    assert not list(tmp_path.glob('**/*.log'))  # refused before the Runner was built
