from mmengine.hooks import Hook

from ..registry import HOOKS


@HOOKS.register_module()
class NeckChannelsCheckHook(Hook):
    """Stop a run before its first iteration when the neck's ``in_channels`` disagree with
    the backbone's output channels, with one message naming both lists.

    The base configs include it (``configs/_base_/custom_imports.py``), so every tool that
    runs them through mmengine's Runner checks it, mmdet's and mmseg's own
    ``tools/train.py`` and ``tools/test.py`` included. Without it the mismatch surfaces as a
    convolution shape error inside the first forward.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        from ..apis.model_check import check_neck_channels
        check_neck_channels(runner.model)
