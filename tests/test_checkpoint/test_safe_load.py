import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from mmpoolformer.checkpoint import CheckpointError, load_checkpoint_file


def test_mmengine_runtime_state_loads_with_weights_only(tmp_path):
    hub = MessageHub.get_instance('safe-load-test')
    for i in range(3):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
    import numpy as np
    state = {'meta': {'seed': np.int64(7), 'lr': np.float32(0.5), 'hist': np.arange(4)},
             'message_hub': hub.state_dict(), 'state_dict': {'w': torch.ones(2)}}
    path = tmp_path / 'ckpt.pth'
    torch.save(state, path)
    loaded = load_checkpoint_file(str(path))
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert loaded['meta']['seed'] == 7 and loaded['meta']['hist'].tolist() == [0, 1, 2, 3]


class _GetattrGadget:
    def __reduce__(self):
        return (getattr, (HistoryBuffer, 'update'))


def test_getattr_in_a_pickle_reaches_only_history_buffer_statistics(tmp_path):
    path = tmp_path / 'gadget.pth'
    torch.save({'x': _GetattrGadget()}, path)
    with pytest.raises(CheckpointError, match=r"getattr\(HistoryBuffer, 'update'\) is not "
                                              r"allowed"):
        load_checkpoint_file(str(path))


def test_numpy_1_and_2_pickles_load_under_either(tmp_path):
    """numpy 2 pickles as numpy._core.multiarray what numpy 1 pickles as
    numpy.core.multiarray; both names are allowlisted, whichever numpy runs."""
    import io

    import numpy as np
    buffer = io.BytesIO()
    state = {'meta': {'eta': np.float64(1.5), 'hist': np.arange(3), 'names': np.array(['a'])}}
    torch.save(state, buffer, _use_new_zipfile_serialization=False)  # one plain pickle
    data = buffer.getvalue()
    names = (b'cnumpy.core.multiarray\n', b'cnumpy._core.multiarray\n')
    written, other = names if names[0] in data else names[::-1]
    for name in (b'_reconstruct', b'scalar'):
        assert written + name in data
    for variant, payload in (('as written', data), ('other numpy', data.replace(written, other))):
        path = tmp_path / 'numpy.pth'
        path.write_bytes(payload)
        meta = load_checkpoint_file(str(path))['meta']
        assert meta['eta'] == 1.5 and meta['hist'].tolist() == [0, 1, 2], variant
        assert meta['names'].tolist() == ['a'], variant
