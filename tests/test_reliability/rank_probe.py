"""``python rank_probe.py tools/train.py ARGS``: run the tool as ``__main__`` and record,
under the directory $RANK_PROBE_DIR, this rank's process id (``pid.<rank>``) and every file
it moves into place (``renames.<rank>``: checkpoints and last_checkpoint are written to a
temporary file and then ``os.replace``d, which Python reports as the audit event
``os.rename``). This is how the tests see which rank writes checkpoints and whom to kill."""
import os
import runpy
import sys

directory, rank = os.environ['RANK_PROBE_DIR'], os.environ.get('RANK', '0')
with open(os.path.join(directory, f'pid.{rank}'), 'w') as f:
    f.write(str(os.getpid()))


def record(event, args):
    if event == 'os.rename':
        with open(os.path.join(directory, f'renames.{rank}'), 'a') as f:
            f.write(f'{args[1]}\n')


sys.addaudithook(record)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
