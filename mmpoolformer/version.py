__version__ = '0.1.0'

# The torch releases mmpoolformer supports, as (major, minor): the oldest and the newest,
# both tested (docs/compatibility.md). setup.py declares this range to pip, and
# ``import mmpoolformer`` refuses a torch outside it (mmpoolformer/compat.py). This file is
# read without importing torch.
TORCH_OLDEST = (2, 1)
TORCH_NEWEST = (2, 14)
