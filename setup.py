"""Metadata lives in setup.cfg; this file only ships the experiment files in the wheel.

The YAML files stay once, in the checkout's top-level ``experiments/`` (the project's layout);
``build_py`` copies them into the built package as ``metarec/experiments``, where
``metarec.paths.experiments_root`` finds them in an installed wheel. An editable install reads
the checkout's folder instead, so nothing is copied there.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

EXPERIMENTS = Path(__file__).resolve().parent / "experiments"
PATTERNS = ("*/*.yaml",)  # <dataset>/*.yaml and sweeps/*.yaml


class BuildWithExperiments(build_py):
    """``build_py`` that also copies ``experiments/`` into ``<build_lib>/metarec/experiments``."""

    def _experiment_files(self) -> list[tuple[Path, Path]]:
        target = Path(self.build_lib) / "metarec" / "experiments"
        sources = sorted(path for pattern in PATTERNS for path in EXPERIMENTS.glob(pattern))
        return [(source, target / source.relative_to(EXPERIMENTS)) for source in sources]

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not (EXPERIMENTS / "synthetic").is_dir():
            raise FileNotFoundError(f"{EXPERIMENTS}/synthetic: no experiment files to package")
        # A stale copy (a renamed experiment) must not reach the wheel: start from empty.
        shutil.rmtree(Path(self.build_lib) / "metarec" / "experiments", ignore_errors=True)
        for source, target in self._experiment_files():
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [str(target) for _, target in self._experiment_files()]


setup(cmdclass={"build_py": BuildWithExperiments})
