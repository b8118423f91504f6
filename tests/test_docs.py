"""The user documentation: every relative link and anchor resolves, and no development
history (issue numbers, session talk, paths outside the repository) is left in it."""
import glob
import os.path as osp
import re
from typing import Dict, List

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOCS = ['README.md'] + sorted(osp.relpath(p, REPO)
                              for p in glob.glob(osp.join(REPO, 'docs', '*.md')))
CONFIGS = sorted(osp.relpath(p, REPO)
                 for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True))

FENCE = re.compile(r'^ {0,3}(`{3,}|~{3,})')
INLINE_CODE = re.compile(r'(`+)(.+?)\1')
LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
HEADING = re.compile(r'^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$')
EXTERNAL = ('http://', 'https://', 'mailto:')


def prose_lines(text: str) -> List[str]:
    """The lines of a markdown text with fenced code blocks blanked out."""
    lines, fence = [], None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
            lines.append('')
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            lines.append('')
        else:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lowercase, punctuation other than
    hyphens and underscores removed, spaces made hyphens."""
    text = LINK.sub(lambda m: m.group(0)[m.group(0).index('[') + 1:m.group(0).index('](')],
                    heading)
    text = re.sub(r'[`*]', '', text).lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path: str) -> List[str]:
    """Every anchor of a markdown file, duplicates numbered as GitHub does (-1, -2, ...)."""
    with open(path, encoding='utf-8') as f:
        lines = prose_lines(f.read())
    seen: Dict[str, int] = {}
    out = []
    for line in lines:
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.append(base if count == 0 else f'{base}-{count}')
    return out


def links(path: str) -> List[tuple]:
    """(line number, target) of every link and image outside code."""
    with open(path, encoding='utf-8') as f:
        lines = prose_lines(f.read())
    found = []
    for number, line in enumerate(lines, 1):
        line = INLINE_CODE.sub(lambda m: 'code', line)
        found += [(number, m.group(1)) for m in LINK.finditer(line)]
    return found


def broken_links(path: str, root: str) -> List[str]:
    """One line per link of ``path`` whose file or anchor does not exist."""
    problems = []
    for number, target in links(path):
        if target.startswith(EXTERNAL):
            continue
        where = f'{osp.relpath(path, root)}:{number}: {target}'
        file_part, _, anchor = target.partition('#')
        resolved = osp.normpath(osp.join(osp.dirname(path), file_part)) if file_part else path
        if not (resolved == root or resolved.startswith(root + osp.sep)):
            problems.append(f'{where}: points outside the repository')
        elif not osp.exists(resolved):
            problems.append(f'{where}: no such file')
        elif anchor and resolved.endswith('.md') and anchor not in anchors(resolved):
            problems.append(f'{where}: no heading with the anchor #{anchor} in '
                            f'{osp.relpath(resolved, root)}')
        elif anchor and not resolved.endswith('.md') and not re.fullmatch(r'L\d+(-L\d+)?',
                                                                           anchor):
            problems.append(f'{where}: an anchor into a file that is not markdown')
    return problems


# Upstream projects whose public issue trackers the docs may cite ("PyTorch issue 188344").
UPSTREAM = ('pytorch', 'torch', 'torchvision', 'mmcv', 'mmdet', 'mmdetection', 'mmseg',
            'mmsegmentation', 'mmengine', 'mmpretrain', 'mmdeploy', 'timm', 'onnx',
            'onnxruntime', 'tensorrt', 'sail-sg', 'numpy', 'triton', 'cuda')
HISTORY = [
    (re.compile(r'\bsessions?\b', re.I), 'talk of a working session'),
    (re.compile(r'\(was\s', re.I), 'a "(was ...)" remark about an earlier value'),
    (re.compile(r'\bwas lent\b', re.I), 'talk of lent machines'),
    (re.compile(r'\.\./shared|(?<![\w.])/work/|/tmp/notes'), 'a path outside the repository'),
    (re.compile(r'\(#\d+\)'), 'a reference to an issue or pull request of this project'),
    (re.compile(r'(?<![\w/.-])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}(?![\w/.-])'),
     'what looks like a commit hash'),
]
ISSUE = re.compile(r'\bissues?\s+#?\d+', re.I)
URL = re.compile(r'https?://\S+')


def history(text: str) -> List[str]:
    """Each remark of development history in ``text`` (code blocks and URLs excluded)."""
    problems = []
    for number, line in enumerate(prose_lines(text), 1):
        line = URL.sub('URL', line)
        for pattern, what in HISTORY:
            problems += [f'{number}: {what}: {m.group(0)!r}' for m in pattern.finditer(line)]
        for m in ISSUE.finditer(line):
            before = re.findall(r'[\w-]+', line[max(0, m.start() - 40):m.start()].lower())
            if not any(word in UPSTREAM for word in before[-3:]):
                problems.append(f'{number}: an issue of this project: {m.group(0)!r} (cite '
                                f'upstream issues as "PyTorch issue N")')
    return problems


@pytest.mark.parametrize('doc', DOCS)
def test_links_and_anchors_resolve(doc):
    problems = broken_links(osp.join(REPO, doc), REPO)
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('doc', DOCS)
def test_no_development_history_in_the_docs(doc):
    with open(osp.join(REPO, doc), encoding='utf-8') as f:
        problems = history(f.read())
    assert not problems, f'{doc}:\n' + '\n'.join(problems)


def test_no_development_history_in_config_comments():
    problems = []
    for config in CONFIGS:
        with open(osp.join(REPO, config), encoding='utf-8') as f:
            comments = '\n'.join(line.split('#', 1)[1] if '#' in line else ''
                                 for line in f.read().splitlines())
        problems += [f'{config}:{p}' for p in history(comments)]
    assert not problems, '\n'.join(problems)


def test_readme_sections_named_by_the_code_exist():
    """Error messages and docstrings send users to README sections by title."""
    headings = {slug(title) for title in re.findall(
        r'^#+\s+(.*?)\s*$', '\n'.join(prose_lines(open(osp.join(REPO, 'README.md')).read())),
        re.M)}
    named = set()
    for path in glob.glob(osp.join(REPO, 'mmpoolformer', '**', '*.py'), recursive=True):
        with open(path, encoding='utf-8') as f:
            named |= set(re.findall(r'README(?:\'s|,) "([^"]+)"', f.read()))
    assert {'What importing mmpoolformer changes', 'Offline use'} <= named, named
    missing = sorted(title for title in named if slug(title) not in headings)
    assert not missing, f'README has no section titled {missing}'


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The checkers themselves: a broken file, a broken anchor, duplicate headings and
    GitHub's slugs, code ignored; history remarks found, upstream issues allowed."""
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'a.md').write_text(
        '# Saving predictions: `tools/test.py --out`\n## Setup\n## Setup\n'
        '## What importing mmpoolformer changes\n')
    (tmp_path / 'README.md').write_text(
        '# Top\n[ok](docs/a.md#saving-predictions-toolstestpy---out) '
        '[dup](docs/a.md#setup-1) [own](#top) '
        '[ok](docs/a.md#what-importing-mmpoolformer-changes) [web](https://x.org/#nope)\n'
        '[missing file](docs/b.md) [missing anchor](docs/a.md#setup-2)\n'
        '[outside](../elsewhere.md) `[in code](nothing.md)`\n'
        '```\n[in a block](nothing.md)\n# Not a heading\n```\n'
        '[not a heading](#not-a-heading)\n')
    problems = broken_links(str(tmp_path / 'README.md'), str(tmp_path))
    assert [p.split(': ', 1)[1] for p in problems] == [
        'docs/b.md: no such file',
        'docs/a.md#setup-2: no heading with the anchor #setup-2 in docs/a.md',
        '../elsewhere.md: points outside the repository',
        '#not-a-heading: no heading with the anchor #not-a-heading in README.md'], problems

    bad = ('The recipe (issue 16), this session, lr 1e-3 (was 1e-4), in ../shared/x, '
           'commit 8b8e564, fixed in (#12).')
    found = history(bad)
    assert len(found) == 6, found
    good = ('PyTorch issue 188344; see also PyTorch issue 111824; mmdet issue 11050; '
            'https://github.com/pytorch/vision/pull/8049 and a 1e-4 tolerance, 0.5 s.\n'
            '```\nsession = ort.InferenceSession(path)\n```\n')
    assert history(good) == []
