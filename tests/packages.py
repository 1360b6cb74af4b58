"""Writing and pip-installing small plugin packages for the tests."""

import subprocess
import sys
import textwrap
from pathlib import Path

from registry.plugins import ENTRY_POINT_GROUP


def write_package(root: Path, dist: str, source: str) -> Path:
    """A one-module package ``dist`` whose module is its ``hunyuan_zoo`` entry point."""
    module = dist.replace("-", "_")
    folder = root / dist
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(source)
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "1.2.3"

        [project.entry-points.{ENTRY_POINT_GROUP}]
        {module} = "{module}"
    """))
    return folder


def pip_install(folders: list[Path], target: Path) -> Path:
    """``pip install --target``: real distributions with real entry points, outside the venv."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), *map(str, folders)],
                   check=True)
    return target
