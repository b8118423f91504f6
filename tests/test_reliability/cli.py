"""Running tools/train.py and tools/test.py in child processes, as users do."""
import json
import os
import subprocess
import sys

from test_tools.test_train_test import CASES, REPO, free_port  # noqa: F401  (tiny runs)

# One child process runs several CLI calls: python, torch, mmdet and mmseg are imported once
# (about 5 s) instead of once per call. Each call is the tool's own main(argv), so argument
# parsing, checks and the Runner are exactly those of the command line; a SystemExit with a
# message is what the interpreter would print as the last line and exit with status 1.
_BATCH = r'''
import importlib.util, json, sys, traceback
calls, out = json.load(open(sys.argv[1])), sys.argv[2]
tools, results = {}, []
for tool, argv in calls:
    if tool not in tools:
        spec = importlib.util.spec_from_file_location('tool_' + tool, 'tools/%s.py' % tool)
        tools[tool] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tools[tool])
    try:
        tools[tool].main(argv)
        results.append((0, ''))
    except SystemExit as e:
        results.append((1, e.code) if isinstance(e.code, str) else (e.code or 0, ''))
    except BaseException:
        results.append((-1, traceback.format_exc()))
    json.dump(results, open(out, 'w'))
'''


def run_batch(calls, tmp_path, timeout=600):
    """Run ``[(tool, argv), ...]`` ('train' or 'test') in one child; return one
    ``(exit status, message)`` per call: 1 and the ERROR line for a handled error, -1 and
    the traceback for an unhandled exception."""
    spec, out = tmp_path / 'calls.json', tmp_path / 'results.json'
    spec.write_text(json.dumps([(tool, [str(a) for a in argv]) for tool, argv in calls]))
    proc = subprocess.run([sys.executable, '-c', _BATCH, str(spec), str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    results = json.loads(out.read_text()) if out.exists() else []
    assert len(results) == len(calls), (proc.stdout + proc.stderr)[-3000:]
    return [tuple(r) for r in results]


def run_cli(*args, env=None, timeout=600):
    """``python tools/...py args`` as a user types it; returns (exit status, stdout+stderr)."""
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout + proc.stderr


def tiny_options(case, root, iters=1, *extra):
    """--cfg-options of a run of ``iters`` iterations on the shapes data at ``root``."""
    return CASES[case][1](root, iters) + list(extra)


def config(case):
    return CASES[case][0]
