"""Checking a two-stage detector's exported tensor mode against PyTorch.

mmdet's tensor mode of a two-stage detector (``TwoStageDetector._forward``) returns the RoI
head's outputs for the RPN's proposals, ranked by RPN score (``scores.sort``, top-k per
level, NMS, ``max_per_img``). Scores that agree to a few units in the last place are
ranked by whichever of them rounding makes larger: onnxruntime's convolutions round
differently from PyTorch's (errors ~1e-7 relative), so two such proposals can come out in
the other order, which permutes rows of every output. (Equal scores have no defined
order either: PyTorch's CPU ``sort`` is not stable.) ``matched_errors`` compares the
outputs row by row, allowing a row to stand at the place of another whose RPN score
differs by at most ``tolerance`` x the largest score (a difference the tolerance accepts
anyway); everything else about the ranking must be the same. A proposal that is not
found among PyTorch's (NMS kept the other of two overlapping boxes with such scores, or
one took the other's place at a top-k cut) makes the error large: not faithful.
"""
from typing import List, Tuple

import torch


def proposals(model, x, samples) -> Tuple[tuple, torch.Tensor, torch.Tensor]:
    """PyTorch's (features, rois (K, 5), RPN scores (K,)) of the batch, as tensor mode."""
    from mmdet.structures.bbox import bbox2roi
    feats = model.extract_feat(x)
    results = model.rpn_head.predict(feats, samples, rescale=False)
    rois = bbox2roi([r.bboxes for r in results])
    return feats, rois, torch.cat([r.scores for r in results])


def _rel(got, want) -> float:
    if got.shape != want.shape:
        return float('inf')
    return ((got - want).abs().max() / want.abs().max().clamp(min=1e-12)).item()


def matched_errors(model, x, samples, got: List[torch.Tensor], want: List[torch.Tensor],
                   tolerance: float) -> Tuple[List[float], int]:
    """Max relative error of each of onnxruntime's outputs ``got`` (cls scores, box
    deltas[, mask logits]) against PyTorch's ``want`` after matching rows whose RPN
    scores are within ``tolerance``; and how many rows were matched to another place."""
    feats, rois, scores = proposals(model, x, samples)
    cls, reg = got[0], got[1]
    if cls.shape != want[0].shape or reg.shape != want[1].shape:
        return [float('inf')] * len(got), 0
    keys_got = torch.cat([cls, reg], 1)
    keys_want = torch.cat([want[0], want[1]], 1)
    slack = tolerance * scores.abs().max().item()
    free = torch.ones(len(rois), dtype=torch.bool)
    order = torch.empty(len(rois), dtype=torch.long)
    for i in range(len(rois)):
        near = free & ((scores - scores[i]).abs() <= slack) & (rois[:, 0] == rois[i, 0])
        candidates = near.nonzero().squeeze(1)
        if candidates.numel() == 0:
            return [float('inf')] * len(got), 0
        distance = (keys_got[i] - keys_want[candidates]).abs().amax(1)
        order[i] = candidates[distance.argmin()]
        free[order[i]] = False
    errors = [_rel(cls, want[0][order]), _rel(reg, want[1][order])]
    if len(got) > 2:  # mask logits of the first rows, recomputed for the matched RoIs
        masks = got[2]
        head = model.roi_head
        with torch.no_grad():
            ref = head._mask_forward(feats, rois[order[:len(masks)]])['mask_preds']
        errors.append(_rel(masks, ref))
    moved = int((order != torch.arange(len(rois))).sum())
    return errors, moved
