"""Build hook: compile src/nightlake/detrends/detreg/_columns.c into a shared library beside it.

The library is plain C loaded with ctypes (no Python API, so no Python headers needed). Without
a C compiler the install still succeeds and nightlake uses its numpy/pyarrow path, slower at
reading large DetReg files (docs/design.md); the test suite fails on such an installation.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/nightlake/detrends/detreg/_columns.c")
LIBRARY = SOURCE.with_suffix(".so")


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        # $CC, else the compiler this Python was built with, else cc
        compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        flags = ["-O3", "-shared", "-fPIC"]
        if sys.platform == "darwin":
            flags = ["-O3", "-dynamiclib"]
        command = [*compiler, *flags, "-o", str(root / LIBRARY), str(root / SOURCE)]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", None) or exc
            print(
                f"nightlake: {SOURCE} not compiled ({detail}); using the numpy/pyarrow path",
                file=sys.stderr,
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["artifacts"].append(str(LIBRARY))
