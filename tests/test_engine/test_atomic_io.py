import io
import os
import stat
import subprocess
import sys
import textwrap

import torch
from mmengine.fileio import get_file_backend
from mmengine.runner.checkpoint import save_checkpoint

import mmpoolformer  # noqa: F401
from mmpoolformer.engine import AtomicLocalBackend


def test_mmengine_saves_local_files_through_the_atomic_backend(tmp_path, monkeypatch):
    path = tmp_path / 'ckpt.pth'
    assert type(get_file_backend(str(path))) is AtomicLocalBackend
    written = []
    original = AtomicLocalBackend.put
    monkeypatch.setattr(AtomicLocalBackend, 'put',
                        lambda self, obj, fp: (written.append(str(fp)), original(self, obj, fp)))
    save_checkpoint({'state_dict': {'w': torch.ones(3)}}, str(path))
    assert written == [str(path)]
    assert torch.equal(torch.load(path, weights_only=True)['state_dict']['w'], torch.ones(3))


def test_files_get_the_mode_a_plain_open_would_give(tmp_path):
    mask = os.umask(0o022)
    try:
        AtomicLocalBackend().put(b'x', tmp_path / 'f.bin')
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp_path / 'f.bin').st_mode) == 0o644


def test_a_kill_while_saving_leaves_the_previous_checkpoint_intact(tmp_path):
    target = tmp_path / 'iter_10.pth'
    target.write_bytes(b'the last good checkpoint')
    code = textwrap.dedent(f"""
        import os, time
        import mmpoolformer
        from mmengine.fileio import get_file_backend
        def stall(fd):  # all bytes are written; be killed before the rename
            print('written', flush=True)
            time.sleep(60)
        os.fsync = stall
        get_file_backend({str(target)!r}).put(b'new' * 1_000_000, {str(target)!r})
    """)
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'written'
    finally:
        proc.kill()
        proc.wait()
    assert target.read_bytes() == b'the last good checkpoint'


def test_last_checkpoint_is_written_atomically(tmp_path):
    """mmengine's CheckpointHook writes last_checkpoint with open(): it goes through put."""
    from mmengine.hooks import checkpoint_hook
    path = tmp_path / 'last_checkpoint'
    path.write_text('iter_2.pth')
    with checkpoint_hook.open(str(path), 'w') as f:
        f.write('iter_4')
        assert path.read_text() == 'iter_2.pth'  # not truncated while being written
        f.write('.pth')
    assert path.read_text() == 'iter_4.pth'
    try:
        with checkpoint_hook.open(str(path), 'w') as f:
            f.write('iter_6')
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert path.read_text() == 'iter_4.pth'
    # Every other file still goes to the builtin open.
    with checkpoint_hook.open(str(tmp_path / 'other'), 'w') as f:
        assert not isinstance(f, io.StringIO)
