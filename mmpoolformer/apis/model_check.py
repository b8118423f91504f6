"""Checks of a detector/segmentor config and model that upstream leaves to a deep error."""
import difflib
import inspect


class ModelConfigError(ValueError):
    pass


def check_neck_channels(model) -> None:
    """Raise if the neck's ``in_channels`` disagree with the backbone's output channels.

    Applies to backbones that declare ``out_channels`` (all of this package's). Without
    this check the mismatch surfaces as a convolution shape error deep in the first forward.
    """
    model = getattr(model, 'module', model)  # DDP wrappers
    backbone, neck = getattr(model, 'backbone', None), getattr(model, 'neck', None)
    declared = getattr(backbone, 'out_channels', None)
    if declared is None or neck is None:
        return
    necks = list(neck) if hasattr(neck, '__iter__') and not hasattr(neck, 'in_channels') \
        else [neck]
    expected = getattr(necks[0], 'in_channels', None)
    if expected is None:
        return
    expected = [expected] if isinstance(expected, int) else list(expected)
    if expected != list(declared):
        raise ModelConfigError(
            f'{type(necks[0]).__name__} in_channels {expected} disagree with the output '
            f'channels of {type(backbone).__name__} {getattr(backbone, "arch_name", "")} '
            f'(out_indices {getattr(backbone, "out_indices", "?")}): {list(declared)}. '
            f'Set neck.in_channels={list(declared)} or change the backbone\'s out_indices.')


# Components built by the detector/segmentor as ``MODELS.build(cfg.model[key])`` with the
# config's keys passed unchanged as keyword arguments.
CHECKED_COMPONENTS = ('backbone', 'neck')


def _suggest(word, candidates):
    close = difflib.get_close_matches(word, candidates, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ''


def _resolve(type_name, scope):
    """The class a config ``type`` names, looked up as the Runner will, or None."""
    from mmengine.registry import MODELS
    with MODELS.switch_scope_and_registry(scope) as registry:
        return registry.get(type_name)


def _registered_names(scope):
    from mmengine.registry import MODELS
    names = set()
    with MODELS.switch_scope_and_registry(scope) as registry:
        while registry is not None:
            names.update(registry.module_dict)
            registry = registry.parent
    return sorted(names)


def check_component_args(model_cfg: dict, default_scope=None) -> None:
    """Raise ModelConfigError for an unknown ``type`` or an unknown keyword argument of the
    backbone or neck, naming it, suggesting the closest valid name and listing all.

    Without this a typo such as ``frozen_stage=1`` surfaces as a TypeError nested in two
    registry messages and a long traceback. Classes whose ``__init__`` takes ``**kwargs``
    cannot be checked and are skipped.
    """
    for key in CHECKED_COMPONENTS:
        parts = model_cfg.get(key)
        for part in parts if isinstance(parts, (list, tuple)) else [parts]:
            if not isinstance(part, dict) or 'type' not in part:
                continue
            type_name = part['type']
            scope = part.get('_scope_', default_scope)
            cls = type_name if inspect.isclass(type_name) else _resolve(type_name, scope)
            if cls is None:
                raise ModelConfigError(
                    f'model.{key}: unknown type {type_name!r} in the {scope or "mmengine"} '
                    f'model registry{_suggest(type_name, _registered_names(scope))}; '
                    f"mmpoolformer's backbones are also reachable as "
                    f"'mmpoolformer.<Name>' from any scope")
            params = inspect.signature(cls.__init__).parameters
            if any(p.kind is p.VAR_KEYWORD for p in params.values()):
                continue
            valid = [name for name in params if name != 'self']
            unknown = [k for k in part if k not in valid and k not in ('type', '_scope_')]
            if unknown:
                hints = ''.join(_suggest(k, valid) for k in unknown[:1])
                raise ModelConfigError(
                    f'model.{key}: {cls.__name__} got unknown argument'
                    f'{"s" if len(unknown) > 1 else ""} {", ".join(map(repr, unknown))}'
                    f'{hints}. Valid arguments: {", ".join(valid)}')
