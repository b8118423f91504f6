"""Training loops that resume where a checkpoint inside an epoch left off."""
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop as _EpochBasedTrainLoop

from ..registry import LOOPS


@LOOPS.register_module()
class EpochBasedTrainLoop(_EpochBasedTrainLoop):
    """mmengine's epoch-based training loop, which also resumes inside an epoch.

    mmengine's loop resumes at the start of the checkpoint's epoch, which is right for the
    checkpoints it saves at the end of an epoch; a checkpoint saved in the middle of one (a
    stop signal, ``PreemptionHook``) would train that epoch's first batches twice and run
    past the schedule. Here the resumed epoch passes over the batches that were trained
    before the checkpoint: the sampler orders an epoch by the seed and the epoch only
    (mmengine's ``DefaultSampler``), so they are the same batches. They are loaded and
    dropped, as mmengine's iteration-based loop does when it resumes. Data augmentation
    draws random numbers as it loads, so the rest of the epoch sees the same images in the
    same order, but not always the same augmentations, as an uninterrupted run.
    """

    def run_epoch(self) -> None:
        done = self._iter - self._epoch * len(self.dataloader)
        if done <= 0:
            return super().run_epoch()
        print_log(f'Resuming inside epoch {self._epoch + 1}: passing over its first {done} '
                  f'batches, trained before the checkpoint', logger='current')
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        for idx, data_batch in enumerate(self.dataloader):
            if idx >= done:
                self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
