"""Registries of mmpoolformer, children of mmengine's root registries.

Models are registered under the ``mmpoolformer`` scope, so ``type='mmpoolformer.PoolFormer'``
builds from any scope. Backbones are additionally registered in mmdet's and mmseg's MODELS
(when those packages are installed), because configs inherited through ``mmdet::`` or
``mmseg::`` are stamped with that scope and look up a plain ``type='PoolFormer'`` there.
"""
import importlib

from mmengine.logging import print_log
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, locations=['mmpoolformer.models'])
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS,
                          locations=['mmpoolformer.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=['mmpoolformer.engine'])

DOWNSTREAM_SCOPES = ('mmdet', 'mmseg')


def register_backbone(cls):
    """Class decorator: register ``cls`` in our MODELS and in mmdet's and mmseg's."""
    MODELS.register_module(module=cls)
    for scope in DOWNSTREAM_SCOPES:
        try:
            registry = importlib.import_module(f'{scope}.registry').MODELS
        except ImportError:
            continue
        existing = registry.module_dict.get(cls.__name__)
        if existing is None:
            registry.register_module(module=cls)
        elif existing is not cls:
            print_log(f'{scope} already has a model named {cls.__name__}; use '
                      f"type='mmpoolformer.{cls.__name__}' to get ours.",
                      logger='current', level=30)
    return cls
