"""The source distribution builds what a checkout builds: a file that setup.py's
extensions compile or include and the sdist lacks makes ``pip install cowdb-*.tar.gz``
fall back to pure Python without a word (the extensions are optional)."""
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = re.compile(r'^#include "([^"]+)"', re.M)


def needed() -> set[str]:
    """Every C file of the package and every header they include, as paths from the root
    (a header is looked up beside its includer, then in third_party/xxhash)."""
    paths: set[str] = set()
    todo = sorted(ROOT.glob("cowdb/**/*.c"))
    while todo:
        f = todo.pop()
        paths.add(f.relative_to(ROOT).as_posix())
        for name in INCLUDE.findall(f.read_text()):
            found = [p for p in (f.parent / name, ROOT / "third_party/xxhash" / name)
                     if p.exists()]
            assert found, f"{f.name} includes {name}, which is nowhere"
            if found[0].relative_to(ROOT).as_posix() not in paths:
                todo.append(found[0])
    return paths


def test_the_sdist_carries_every_c_file_and_header(tmp_path):
    # built from a copy: the checkout's cowdb.egg-info/SOURCES.txt, left by an earlier
    # build, would add what it listed then
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info")
    for name in ("cowdb", "third_party"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)],
                   cwd=src, check=True, capture_output=True)
    (archive,) = tmp_path.glob("cowdb-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    want = needed()
    assert "third_party/xxhash/xxhash.h" in want and "cowdb/tree/_write_c.h" in want
    assert want - names == set()
    assert "third_party/xxhash/LICENSE" in names  # (vendored code keeps its licence)
