"""Checkpoint key layouts and their conversion to this package's backbone layout.

This package's PoolFormer layout (also timm's key names)::

    stem.conv.{weight,bias}
    stages.{s}.downsample.conv.{weight,bias}                     (s >= 1)
    stages.{s}.blocks.{j}.{norm1,norm2}.{weight,bias}
    stages.{s}.blocks.{j}.mlp.{fc1,fc2}.{weight,bias}            fc weights (out, in)
    stages.{s}.blocks.{j}.layer_scale{1,2}.scale                 (C,)
    out_norms.{s}.{weight,bias}                                  not in ImageNet checkpoints

The official sail-sg/poolformer layout (mmpretrain's is the same behind ``backbone.``)::

    patch_embed.proj.*, network.{2s}.{j}.{norm1,norm2,mlp.fc1,mlp.fc2}.*,
    network.{2s}.{j}.layer_scale_{1,2}, network.{2s-1}.proj.*, norm.*, head.*

with 1x1-conv MLP weights (out, in, 1, 1). timm uses our names with 1x1-conv weights and,
in some versions, (C, 1, 1) scales. The official dense-prediction (mmdet 2.x / mmseg 0.x)
backbones add output norms ``norm{2s}`` for stage s.

The MetaFormer baselines (IdentityFormer, RandFormer, PoolFormerV2, ConvFormer, CAFormer)
add norms around the stem and downsampling convs, and block parts such as
``token_mixer.{pwconv1,dwconv,pwconv2,qkv,proj,random_matrix}``, ``mlp.act.{scale,bias}``
and ``res_scale{1,2}.scale``; block names are the same in all layouts. The official
sail-sg/metaformer layout::

    downsample_layers.0.{conv.*,post_norm.weight}      -> stem.{conv.*,post_norm.weight}
    downsample_layers.{s}.{pre_norm.weight,conv.*}     -> stages.{s}.downsample.*
    stages.{s}.{j}.*                                   -> stages.{s}.blocks.{j}.*
    norm.*, head.*                                     classifier, not used

timm's layout has our names, except ``stem.norm`` (our ``stem.post_norm``) and
``stages.{s}.downsample.norm`` (our ``pre_norm``), with 1x1-conv weights for the MLPs
and separable-conv projections outside attention stages.
"""
import re

import torch

_OFFICIAL_BLOCK = re.compile(r'^network\.(\d+)\.(\d+)\.(.+)$')
_OFFICIAL_DOWN = re.compile(r'^network\.(\d+)\.proj\.(weight|bias)$')
_OFFICIAL_OUT_NORM = re.compile(r'^norm(\d+)\.(weight|bias)$')
_OFFICIAL_BLOCK_PARTS = {
    'layer_scale_1': 'layer_scale1.scale',
    'layer_scale_2': 'layer_scale2.scale',
}


def _official_key(key: str, with_out_norms: bool):
    """Our key for an official PoolFormer key, or None when it is not a backbone key."""
    if key.startswith('patch_embed.proj.'):
        return 'stem.conv.' + key[len('patch_embed.proj.'):]
    m = _OFFICIAL_DOWN.match(key)
    if m and int(m.group(1)) % 2 == 1:
        return f'stages.{(int(m.group(1)) + 1) // 2}.downsample.conv.{m.group(2)}'
    m = _OFFICIAL_BLOCK.match(key)
    if m and int(m.group(1)) % 2 == 0:
        part = _OFFICIAL_BLOCK_PARTS.get(m.group(3), m.group(3))
        return f'stages.{int(m.group(1)) // 2}.blocks.{m.group(2)}.{part}'
    m = _OFFICIAL_OUT_NORM.match(key)
    if with_out_norms and m and int(m.group(1)) % 2 == 0:
        return f'out_norms.{int(m.group(1)) // 2}.{m.group(2)}'
    return None


_BASELINE_STEM = re.compile(r'^downsample_layers\.0\.(conv\..+|post_norm\..+)$')
_BASELINE_DOWN = re.compile(r'^downsample_layers\.(\d+)\.(conv\..+|pre_norm\..+)$')
_BASELINE_BLOCK = re.compile(r'^stages\.(\d+)\.(\d+)\.(.+)$')


def _baseline_key(key: str, with_out_norms: bool):
    """Our key for an official sail-sg/metaformer key, or None when not a backbone key."""
    m = _BASELINE_STEM.match(key)
    if m:
        return f'stem.{m.group(1)}'
    m = _BASELINE_DOWN.match(key)
    if m:
        return f'stages.{m.group(1)}.downsample.{m.group(2)}'
    m = _BASELINE_BLOCK.match(key)
    if m:
        return f'stages.{m.group(1)}.blocks.{m.group(2)}.{m.group(3)}'
    if with_out_norms and key.startswith('out_norms.'):
        return key
    return None


_TIMM_RENAMES = ((re.compile(r'^stem\.norm\.'), 'stem.post_norm.'),
                 (re.compile(r'^(stages\.\d+\.downsample)\.norm\.'), r'\1.pre_norm.'))


def _native_key(key: str, with_out_norms: bool):
    """Our key for a timm (or our own) key, or None when not a backbone key."""
    if key.startswith(('stem.', 'stages.')):
        for pattern, replacement in _TIMM_RENAMES:
            key = pattern.sub(replacement, key)
        return key
    if with_out_norms and key.startswith('out_norms.'):
        return key
    return None


_LINEAR_AS_CONV = re.compile(r'\.(mlp\.fc[12]|token_mixer\.pwconv[12])\.weight$')


def _normalise_shape(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """Squeeze 1x1-conv kernels of linear layers to (out, in) and (C, 1, 1) scales to (C,)."""
    if _LINEAR_AS_CONV.search(key) and tensor.dim() == 4 and tensor.shape[2:] == (1, 1):
        return tensor.flatten(1)
    if key.endswith('.scale') and tensor.dim() == 3 and tensor.shape[1:] == (1, 1):
        return tensor.flatten()
    return tensor


LAYOUTS = {
    'official': _official_key,  # sail-sg/poolformer (and mmpretrain)
    'official-metaformer': _baseline_key,  # sail-sg/metaformer
    'timm': _native_key,  # timm, and this package's own
}


def detect_layout(state_dict: dict) -> str:
    keys = list(state_dict)
    if any(k.startswith(('patch_embed.', 'network.')) for k in keys):
        return 'official'
    if any(k.startswith('downsample_layers.') for k in keys):
        return 'official-metaformer'
    if any(k.startswith('stem.conv.') for k in keys):
        return 'timm'
    raise KeyError('unrecognised checkpoint layout: expected official PoolFormer keys '
                   '(patch_embed.*, network.*), official MetaFormer-baselines keys '
                   '(downsample_layers.*, stages.*) or timm/mmpoolformer keys (stem.conv.*, '
                   f'stages.*); found e.g. {keys[:5]}')


def convert_state_dict(state_dict: dict, with_out_norms: bool = False):
    """Convert a PoolFormer/MetaFormer state_dict of any known layout to ours.

    Args:
        state_dict: tensors by key (already unwrapped and stripped of ``backbone.``).
        with_out_norms: also take output norms (dense-prediction checkpoints only;
            ImageNet checkpoints' final ``norm`` belongs to the classifier).

    Returns:
        (converted, sources, unused, layout): our key -> tensor, our key -> source key,
        the source keys that are not backbone weights, and the detected layout name.
    """
    layout = detect_layout(state_dict)
    to_ours = LAYOUTS[layout]
    converted, sources, unused = {}, {}, []
    for key, tensor in state_dict.items():
        new_key = to_ours(key, with_out_norms)
        if new_key is None:
            unused.append(key)
            continue
        converted[new_key] = _normalise_shape(new_key, tensor)
        sources[new_key] = key
    return converted, sources, unused, layout
