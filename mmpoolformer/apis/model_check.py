"""Checks of a built detector/segmentor that upstream leaves to the first forward pass."""


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
