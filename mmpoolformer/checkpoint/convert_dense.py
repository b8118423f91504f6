"""Checkpoint conversion with a per-key report: ImageNet backbones and whole dense models.

Two modes, used by ``tools/convert_checkpoint.py``:

- ImageNet (official, mmpretrain or timm layout) -> this package's backbone layout. Checked
  against a built backbone with the package's strict loader: every backbone weight must
  fit; only the dense-prediction output norms may be missing (they are left at init).
- Whole models trained by the official PoolFormer code (mmdet 2.x / mmseg 0.x) -> the
  matching mmdet 3.x / mmseg 1.x model of a config here. ``backbone.*`` goes through the
  backbone layout conversion, with the output norms (``backbone.norm{2s}``). mmdet 3.x
  and mmseg 1.x kept the key names of FPN, RetinaHead, RPNHead, the standard RoI heads
  and FPNHead (their own model zoos load the 2.x/0.x checkpoints), so ``neck.*`` and the
  head keys are copied; any difference shows up in the strict check against the model.

Nothing is ever partially converted: any key without a place, any missing weight and any
shape mismatch raises ``CheckpointError`` naming the keys.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from .layouts import convert_state_dict
from .loading import (
    NOT_IN_IMAGENET,
    _summarise,
    extract_state_dict,
    load_converted,
    strict_fit,
    unwrap,
)
from .safe_load import CheckpointError

# Top-level module names of mmdet/mmseg models besides the backbone.
DENSE_PREFIXES = ('neck.', 'bbox_head.', 'rpn_head.', 'roi_head.', 'decode_head.',
                  'auxiliary_head.')
_OUT_NORM = re.compile(r'^backbone\.out_norms\.(\d+)\.')


@dataclass
class Conversion:
    """What a conversion did, key by key."""
    layout: str
    state_dict: Dict[str, torch.Tensor]
    renamed: List[Tuple[str, str]] = field(default_factory=list)  # (source, ours)
    dropped: List[Tuple[str, str]] = field(default_factory=list)  # (source, why)
    left_at_init: List[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def is_dense(checkpoint) -> bool:
    """Whether the checkpoint holds a whole detector/segmentor, not a backbone."""
    keys = list(unwrap(checkpoint))
    return any(k.startswith('backbone.') for k in keys) and \
        any(k.startswith(DENSE_PREFIXES) for k in keys)


def dataset_meta(checkpoint) -> dict:
    """mmdet 3.x / mmseg 1.x ``dataset_meta`` from a 2.x/0.x (``CLASSES``, ``PALETTE``) or
    3.x/1.x (``dataset_meta``) checkpoint's meta."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        return {}
    if isinstance(meta.get('dataset_meta'), dict):
        return dict(meta['dataset_meta'])
    found = {}
    for old, new in (('CLASSES', 'classes'), ('PALETTE', 'palette')):
        if meta.get(old) is not None:
            found[new] = list(meta[old])
    return found


def convert_imagenet(checkpoint, backbone: torch.nn.Module,
                     prefix: Optional[str] = None) -> Conversion:
    """An ImageNet checkpoint in this package's backbone layout, checked on ``backbone``."""
    state_dict = extract_state_dict(checkpoint, prefix)
    try:
        converted, sources, unused, layout = convert_state_dict(state_dict, False)
    except KeyError as e:
        raise CheckpointError(str(e).strip('"')) from None
    missing, _ = load_converted(backbone, converted, sources, unused,
                                allowed_missing=NOT_IN_IMAGENET, logger='silent')
    return Conversion(
        layout=layout, state_dict=converted,
        renamed=[(sources[k], k) for k in converted],
        dropped=[(k, 'not a backbone weight (ImageNet classifier)') for k in unused],
        left_at_init=list(missing))


def _renamed_whole_model(state_dict: dict):
    """(state_dict in our keys, our key -> source key, layout) of a whole-model checkpoint:
    the backbone's keys converted, every other key as it is."""
    backbone_sd = {k[len('backbone.'):]: v for k, v in state_dict.items()
                   if k.startswith('backbone.')}
    if not backbone_sd:
        raise CheckpointError('no backbone.* keys: not a whole detector/segmentor checkpoint')
    try:
        converted, sources, unused, layout = convert_state_dict(backbone_sd, True)
    except KeyError as e:
        raise CheckpointError(str(e).strip('"')) from None
    if unused:
        raise CheckpointError(f'backbone keys of an unknown layout: '
                              f'{_summarise("backbone." + k for k in unused)}')
    out, source_of = {}, {}
    for key, tensor in converted.items():
        out['backbone.' + key] = tensor
        source_of['backbone.' + key] = 'backbone.' + sources[key]
    for key, tensor in state_dict.items():
        if not key.startswith('backbone.'):
            out[key] = tensor
            source_of[key] = key
    return out, source_of, layout


def _drop_unread_out_norms(out: dict, own: dict, outputs: set, source_of: dict) -> list:
    """Remove output norms of stages the model does not output; [(source key, why)]."""
    dropped = []
    for key in [k for k in out if k not in own]:
        m = _OUT_NORM.match(key)
        if m and int(m.group(1)) not in outputs:
            dropped.append((source_of[key], f'output norm of stage {m.group(1)}, which '
                                            f'this model does not output'))
            del out[key]
    return dropped


def convert_dense(checkpoint, model: torch.nn.Module) -> Conversion:
    """A whole mmdet 2.x / mmseg 0.x model checkpoint for ``model`` (mmdet 3.x / mmseg 1.x).

    Raises CheckpointError unless every weight of ``model`` is filled with the right shape
    and every source key is used, except output norms of backbone stages that ``model``
    does not output (the official RetinaNet has a stride-4 norm that its FPN never reads).
    """
    out, source_of, layout = _renamed_whole_model(unwrap(checkpoint))
    own = model.state_dict()
    outputs = set(getattr(model.backbone, 'out_indices', ()))
    dropped = _drop_unread_out_norms(out, own, outputs, source_of)
    fit = strict_fit(own, out, source_of)
    wrong = [f'{k} (source {source_of[k]}): checkpoint {theirs}, model {ours}'
             for k, theirs, ours in fit.mismatched]
    problems = []
    if wrong:
        problems.append(f'shape mismatch for {"; ".join(wrong[:4])}'
                        f'{f" ... and {len(wrong) - 4} more" if len(wrong) > 4 else ""}')
    if fit.extra:
        problems.append(f'keys the model has no place for: {_summarise(fit.extra)}')
    if fit.missing:
        problems.append(f'weights the model needs that the checkpoint lacks: '
                        f'{_summarise(fit.missing)}')
    if problems:
        raise CheckpointError(f'the checkpoint does not fit {type(model).__name__} with '
                              f'{type(model.backbone).__name__} '
                              f'{getattr(model.backbone, "arch_name", "")}: '
                              + '; '.join(problems))
    model.load_state_dict(out, strict=True)  # the final word: mmengine/torch's own check
    return Conversion(layout=f'{layout} (whole model)', state_dict=out,
                      renamed=[(source_of[k], k) for k in out], dropped=dropped,
                      meta=dataset_meta(checkpoint))
