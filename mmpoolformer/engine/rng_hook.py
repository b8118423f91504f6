import torch
from mmengine.hooks import Hook

from ..registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Make ``--resume`` continue the torch random stream where the checkpoint left it.

    mmengine 0.10.7 re-seeds on resume but does not checkpoint RNG state. Data randomness
    (numpy/python RNG in the pipelines) is reproduced by the train loop, which replays the
    dataloader up to the resumed iteration; model randomness (dropout, drop path, RPN/RoI
    samplers) draws from torch's RNG and was not: a resumed run diverged from an
    uninterrupted one. This hook stores torch's CPU (and CUDA) RNG state in each checkpoint
    and restores it right before the first training iteration after resuming, i.e. after
    the dataloader replay, exactly where the uninterrupted run stood.
    """

    priority = 'VERY_LOW'

    def __init__(self):
        self._pending = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(cpu=torch.get_rng_state())
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint.setdefault('meta', {})['torch_rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('meta', {}).get('torch_rng_state')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is None:
            return
        torch.set_rng_state(self._pending['cpu'])
        if 'cuda' in self._pending and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self._pending['cuda'])
        self._pending = None
