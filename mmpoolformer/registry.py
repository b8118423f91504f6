"""Registries of mmpoolformer, children of mmengine's root registries.

``TOKEN_MIXERS``, ``NORM_LAYERS`` and ``ACTIVATIONS`` are children of our MODELS.

Models are registered under the ``mmpoolformer`` scope, so ``type='mmpoolformer.PoolFormer'``
builds from any scope. Backbones are additionally registered in mmdet's and mmseg's MODELS
(when those packages are installed), because configs inherited through ``mmdet::`` or
``mmseg::`` are stamped with that scope and look up a plain ``type='PoolFormer'`` there;
the lr-decay optimizer-wrapper constructor likewise.
"""
import difflib
import importlib

from mmengine.logging import print_log
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, locations=['mmpoolformer.models'])
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS,
                          locations=['mmpoolformer.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=['mmpoolformer.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=['mmpoolformer.engine'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, locations=['mmpoolformer.engine'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, locations=['mmpoolformer.evaluation'])

# The MetaFormer plugs: children of MODELS, so a user's module registers a token mixer, a
# norm or an activation with ``@TOKEN_MIXERS.register_module()`` (loaded through a config's
# ``custom_imports``) and configs name it like the built-in ones. Each has a scope of its
# own (mmengine keys a registry's children by scope).
TOKEN_MIXERS = Registry('token mixer', parent=MODELS, scope='mmpoolformer_token_mixers',
                        locations=['mmpoolformer.models.layers'])
NORM_LAYERS = Registry('norm layer', parent=MODELS, scope='mmpoolformer_norm_layers',
                       locations=['mmpoolformer.models.layers'])
ACTIVATIONS = Registry('activation', parent=MODELS, scope='mmpoolformer_activations',
                       locations=['mmpoolformer.models.layers'])

DOWNSTREAM_SCOPES = ('mmdet', 'mmseg')


def lookup(registry: Registry, cfg, what: str):
    """(class or function, remaining kwargs) for ``cfg = dict(type=NAME, **kwargs)`` from
    the registry's own entries; an unknown name lists the valid ones, with a did-you-mean."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'a {what} config must be a dict with a "type" key, got {cfg!r}')
    cfg = dict(cfg)
    name = cfg.pop('type')
    registry.import_from_location()
    found = registry.module_dict.get(name) if isinstance(name, str) else name
    if found is None:
        valid = sorted(registry.module_dict)
        lower = {v.lower(): v for v in valid}
        close = difflib.get_close_matches(str(name).lower(), list(lower), n=1)
        hint = f" (did you mean '{lower[close[0]]}'?)" if close else ''
        raise KeyError(f'unknown {what} {name!r}{hint}; valid {what}s: {", ".join(valid)}. '
                       f'Register your own with @{_NAMES[id(registry)]}.register_module() '
                       f'(from mmpoolformer.registry) and load its module through the '
                       f"config's custom_imports")
    return found, cfg


_NAMES = {id(TOKEN_MIXERS): 'TOKEN_MIXERS', id(NORM_LAYERS): 'NORM_LAYERS',
          id(ACTIVATIONS): 'ACTIVATIONS'}


def register_downstream(registry: str, root: bool = False):
    """Class decorator: register ``cls`` in our ``registry`` (a name of this module) and in
    mmdet's and mmseg's registry of that name, where their configs look plain types up;
    ``root``: in mmengine's too, for configs without a scope."""

    def register(cls):
        globals()[registry].register_module(module=cls)
        scopes = (('mmengine', ) if root else ()) + DOWNSTREAM_SCOPES
        for scope in scopes:
            try:
                downstream = getattr(importlib.import_module(f'{scope}.registry'), registry)
            except ImportError:
                continue
            existing = downstream.module_dict.get(cls.__name__)
            if existing is None:
                downstream.register_module(module=cls)
            elif existing is not cls:
                print_log(f'{scope} already has a {registry} entry named {cls.__name__}; use '
                          f"type='mmpoolformer.{cls.__name__}' to get ours.",
                          logger='current', level=30)
        return cls

    return register


register_backbone = register_downstream('MODELS')
