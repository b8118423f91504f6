"""The CUDA backend: what CUDA runs of the fast paths, and on which memory layouts.

CUDA takes the portable fast paths (``portable.py``: the pooling and one-group-norm
backwards written layout-free, PoolFormer's token mixing as one ``lerp``); the channel MLP
is the plain one (cuBLAS GEMMs). A native kernel gets a channels-last view of the
(B, H, W, C) features only when it is listed here, i.e. proved right on CUDA, forward and
backward, by the parity suite (``tools/device_check.sh`` runs it on a CUDA machine);
everything else gets contiguous NCHW memory.

Known wrong, so not listed: the avg_pool2d backward on channels-last memory with padding
(PyTorch issue 188344: max abs error 1.75 on torch 2.11+cu130, an H200), and group_norm's
backward on channels-last views (dx off by 4e-3 in float64 on the same machine; see also
PyTorch issue 111824).
"""

# ConvFormer and CAFormer, whose convolutions run on channels-last views forward and
# backward, matched the official definition to 8e-15 in float64 on an H200.
CHANNELS_LAST_VERIFIED = frozenset({'conv2d'})

# torch.compile on CUDA takes the reference ops, which Inductor fuses into Triton kernels of
# its own (no GPU measurement yet says that the custom operators would be faster).
COMPILE_WITH_FAST_PATHS = False
# Inference compiles too: Inductor's fused kernels are what compiling buys on CUDA.
COMPILE_INFERENCE = True
