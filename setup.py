"""Install mmpoolformer.

mmcv is deliberately not in ``install_requires``: it has no wheel for the torch we use and
pip would try to build it in an isolated environment with a freshly downloaded (CUDA) torch.
As in OpenMMLab's own packages it is listed in ``requirements/mminstall.txt`` for mim, and
``tools/setup_env.sh`` builds it from source with its ops.
"""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name):
    path = osp.join(HERE, 'requirements', name)
    with open(path) as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


def read_version_file():
    scope = {}
    with open(osp.join(HERE, 'mmpoolformer', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope


def torch_requirement(scope):
    """The supported torch releases: pip refuses a torch outside them."""
    (old_major, old_minor), (new_major, new_minor) = scope['TORCH_OLDEST'], scope['TORCH_NEWEST']
    return f'torch>={old_major}.{old_minor},<{new_major}.{new_minor + 1}'


def add_mim_extension():
    """Expose configs/ and tools/ under mmpoolformer/.mim so that mim finds them.

    Editable installs get symlinks, regular installs get copies (as mmdet/mmyolo do).
    """
    mode = 'symlink' if 'develop' in os.sys.argv or 'editable_wheel' in os.sys.argv \
        else 'copy'
    mim_root = osp.join(HERE, 'mmpoolformer', '.mim')
    os.makedirs(mim_root, exist_ok=True)
    for name in ('configs', 'tools', 'demo', 'model-index.yml'):
        src = osp.join(HERE, name)
        dst = osp.join(mim_root, name)
        if not osp.exists(src):
            continue
        if osp.lexists(dst):
            if osp.isdir(dst) and not osp.islink(dst):
                shutil.rmtree(dst)
            else:
                os.remove(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_root), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    version_file = read_version_file()
    setup(
        name='mmpoolformer',
        version=version_file['__version__'],
        description='PoolFormer and MetaFormer backbones for mmdet 3.x and mmseg 1.x',
        long_description=open(osp.join(HERE, 'README.md')).read()
        if osp.exists(osp.join(HERE, 'README.md')) else '',
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        python_requires='>=3.9,<3.13',
        packages=find_packages(exclude=('configs', 'tools', 'demo', 'tests')),
        include_package_data=True,
        package_data={'mmpoolformer': ['.mim/**/*']},
        install_requires=[torch_requirement(version_file)] + read_requirements('runtime.txt'),
        extras_require={
            'tests': read_requirements('tests.txt'),
            'mim': read_requirements('mminstall.txt'),
        },
        zip_safe=False,
    )
