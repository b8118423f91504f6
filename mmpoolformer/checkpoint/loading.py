"""Strict loading of pretrained weights into a backbone, with a report of what was used."""
from typing import NamedTuple, Optional

import torch
from mmengine.logging import print_log

from .layouts import convert_state_dict
from .safe_load import CheckpointError, load_checkpoint_file

# Parameters that no ImageNet checkpoint has: the dense-prediction output norms.
NOT_IN_IMAGENET = ('out_norms.',)


def unwrap(checkpoint) -> dict:
    """The tensors of a checkpoint, from its ``state_dict``/``model`` entry if it has one."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'a checkpoint must hold a dict, got {type(checkpoint).__name__}')
    for wrapper in ('state_dict', 'model'):
        if isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError('the checkpoint holds no tensors')
    return tensors


def extract_state_dict(checkpoint, prefix: Optional[str] = None) -> dict:
    """The tensors of a checkpoint, unwrapped from ``state_dict``/``model`` entries.

    With ``prefix`` (e.g. ``'backbone.'``) only keys under it are kept, stripped of it.
    Without, a ``backbone.`` prefix (mmpretrain, mmdet, mmseg) is stripped where present
    and other keys (e.g. ``head.*``) are kept as they are, to be reported as unused.
    """
    state_dict = unwrap(checkpoint)
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        picked = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not picked:
            raise CheckpointError(f'no key of the checkpoint starts with prefix {prefix!r}; '
                                  f'keys look like {list(state_dict)[:3]}')
        return picked
    return {k[len('backbone.'):] if k.startswith('backbone.') else k: v
            for k, v in state_dict.items()}


def _summarise(keys, limit=8):
    keys = sorted(keys)
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


class Fit(NamedTuple):
    """How a state_dict fits a model's: every list names keys (checkpoint keys where the
    model has no such key). ``mismatched``: (model key, checkpoint shape, model shape)."""
    mismatched: list
    extra: list
    missing: list
    required: list


def strict_fit(own: dict, state: dict, sources: dict, allowed_missing=()) -> Fit:
    """Compare ``state`` (model keys -> tensors, renamed from ``sources``' checkpoint keys)
    with the model's ``own`` state_dict: the one strict-load check of the package."""
    mismatched = [(k, tuple(t.shape), tuple(own[k].shape)) for k, t in state.items()
                  if k in own and own[k].shape != t.shape]
    extra = [sources[k] for k in state if k not in own]
    missing = [k for k in own if k not in state]
    required = [k for k in missing if not k.startswith(tuple(allowed_missing))]
    return Fit(mismatched, extra, missing, required)


def load_converted(model: torch.nn.Module, converted: dict, sources: dict, unused: list,
                   allowed_missing=NOT_IN_IMAGENET, logger='current'):
    """Load ``converted`` into ``model``; refuse any partial or mismatched load.

    Raises CheckpointError naming the key and both shapes on a shape mismatch, and listing
    the keys on missing weights (other than ``allowed_missing``) or on backbone weights the
    model has no place for (a checkpoint of another arch).
    """
    arch = getattr(model, 'arch_name', None)
    hint = f' The model is {type(model).__name__} {arch}; is the checkpoint of another ' \
           f'arch?' if arch else ''
    fit = strict_fit(model.state_dict(), converted, sources, allowed_missing)
    if fit.mismatched:
        key, theirs, ours = fit.mismatched[0]
        raise CheckpointError(
            f'shape mismatch for {key} (checkpoint key {sources[key]}): checkpoint has '
            f'{theirs}, model has {ours}.{hint}')
    if fit.extra:
        raise CheckpointError(f'the checkpoint has backbone weights this model has no place '
                              f'for: {_summarise(fit.extra)}.{hint}')
    if fit.required:
        raise CheckpointError(f'the checkpoint lacks weights this model needs: '
                              f'{_summarise(fit.required)}.{hint}')
    model.load_state_dict(converted, strict=False)
    if fit.missing:
        print_log(f'not in the checkpoint, left at their init: {_summarise(fit.missing, 16)} '
                  f'(expected: ImageNet checkpoints have no dense-prediction output norms)',
                  logger=logger)
    if unused:
        print_log(f'checkpoint keys not used by the backbone: {_summarise(unused, 16)}',
                  logger=logger)
    return fit.missing, unused


def load_pretrained(model: torch.nn.Module, filename: str, prefix: Optional[str] = None,
                    map_location='cpu', logger='current'):
    """Load ImageNet (or dense-prediction backbone) weights into ``model`` strictly."""
    checkpoint = load_checkpoint_file(filename, map_location=map_location)
    state_dict = extract_state_dict(checkpoint, prefix)
    with_out_norms = any(k.startswith('out_norms.') for k in state_dict)
    converted, sources, unused, layout = convert_state_dict(state_dict, with_out_norms)
    print_log(f'loading {type(model).__name__} weights from {filename} ({layout} layout)',
              logger=logger)
    return load_converted(model, converted, sources, unused, logger=logger)
