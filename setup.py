import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def get_version() -> str:
    scope: dict = {}
    with open(osp.join(HERE, 'mmcvt', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def parse_requirements(fname: str) -> list:
    """Read a requirements file, following ``-r`` includes, skipping comments."""
    reqs = []
    with open(osp.join(HERE, fname)) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                reqs += parse_requirements(
                    osp.join(osp.dirname(fname), line[3:].strip()))
            else:
                reqs.append(line)
    return reqs


def add_mim_extension() -> None:
    """Put configs (and tools) under ``mmcvt/.mim`` as OpenMMLab packages do,
    so a pip-installed mmcvt finds them and ``mmcvt::`` config bases work:
    links for editable installs, copies for wheels and sdists."""
    if any(cmd in sys.argv for cmd in ('develop', 'editable_wheel')):
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('install', 'bdist_wheel', 'sdist')):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(HERE, 'mmcvt', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src = osp.join(HERE, name)
        dst = osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


add_mim_extension()

setup(
    name='mmcvt',
    version=get_version(),
    description='CvT (Convolutional vision Transformer) backbones for '
    'OpenMMLab: mmpretrain, mmdet and mmseg',
    long_description=open(osp.join(HERE, 'README.md')).read()
    if osp.exists(osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    # tools/setup_env.sh installs the pinned stack for Python 3.11
    python_requires='>=3.11',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    # configs ship inside the package (mmcvt/.mim/configs), see above
    include_package_data=True,
    package_data={'mmcvt': ['.mim/model-index.yml', '.mim/configs/**/*',
                            '.mim/tools/**/*']},
    install_requires=parse_requirements('requirements/runtime.txt'),
    extras_require={
        'mm': parse_requirements('requirements/mminstall.txt'),
        'tests': parse_requirements('requirements/tests.txt'),
        'all': parse_requirements('requirements.txt'),
    },
    zip_safe=False,
)
