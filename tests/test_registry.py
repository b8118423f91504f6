import subprocess
import sys
import textwrap

import pytest
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope

import mmpoolformer  # noqa: F401
from mmpoolformer.models import PoolFormer
from mmpoolformer.registry import MODELS


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_plain_type_builds_from_downstream_registries(scope):
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type='PoolFormer', arch='s12', out_indices=(1, 2, 3)))
    assert isinstance(model, PoolFormer) and model.out_channels == [128, 320, 512]


@pytest.mark.parametrize('registry', [ROOT_MODELS, MODELS])
def test_scoped_type_builds_from_any_scope(registry):
    for scope in ('mmdet', 'mmseg', 'mmengine'):
        with DefaultScope.overwrite_default_scope(scope):
            model = registry.build(dict(type='mmpoolformer.PoolFormer', arch='s24'))
        assert isinstance(model, PoolFormer) and len(model.stages[0].blocks) == 4


def test_custom_imports_in_a_config_file(tmp_path):
    """A fresh interpreter that never imported mmpoolformer gets it from the config."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(textwrap.dedent("""
        custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)
        model = dict(type='PoolFormer', arch='s12', out_indices=(3,))
    """))
    code = textwrap.dedent(f"""
        import sys
        from mmengine.config import Config
        from mmdet.registry import MODELS
        assert 'mmpoolformer' not in sys.modules
        cfg = Config.fromfile({str(cfg)!r})
        model = MODELS.build(cfg.model)
        print(type(model).__module__, model.out_channels)
    """)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['mmpoolformer.models.backbones.poolformer', '[512]']
