"""Fixtures for the DetReg tests: the compiled C client, master images, a database."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def c_tool(tmp_path_factory) -> Path:
    """tests/detreg/detreg_tool.c compiled with gcc for this run."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: the C interoperability tests need a C compiler")
    out = tmp_path_factory.mktemp("ctool") / "detreg_tool"
    subprocess.run(
        [gcc, "-O1", "-Wall", "-Werror", "-o", str(out), str(HERE / "detreg_tool.c")],
        check=True,
        capture_output=True,
        text=True,
    )
    return out


@pytest.fixture
def detregister_script() -> Path:
    script = BIN / "detregister"
    if not script.exists():
        pytest.fail(f"console script missing: {script} (reinstall with pip install -e .)")
    return script


def write_master(path: Path, *, extensions: list[dict] | None = None, **cards) -> Path:
    """A small master image with ``cards`` in its primary header (MEF if ``extensions``)."""
    import numpy as np
    from astropy.io import fits

    if extensions is None:
        hdu = fits.PrimaryHDU(np.zeros((2, 2), np.float32))
        hdu.header.update(cards)
        hdu.writeto(path)
    else:
        primary = fits.PrimaryHDU()
        primary.header.update(cards)
        hdus = [primary]
        for ext in extensions:
            image = fits.ImageHDU(np.zeros((2, 2), np.float32))
            image.header.update(ext)
            hdus.append(image)
        fits.HDUList(hdus).writeto(path)
    return path


FLAT_CARDS = {
    "IMAGETYP": "flat",
    "FILTER": "VR DECam c0007 6300.0 2600.0",
    "CCDNUM": 5,
    "TV_START": "2014-09-01T00:00:00",
    "TV_STOP": "2014-10-01T00:00:00",
    "SIGMA": 1.5,
    "CLIPSIG": 1.25,
}


@pytest.fixture
def master(tmp_path):
    """Factory: master(name, **cards) writes a flat master (cards override FLAT_CARDS)."""

    def make(name: str = "flat.fits", *, drop: tuple[str, ...] = (), extensions=None, **cards):
        merged = {k: v for k, v in {**FLAT_CARDS, **cards}.items() if k not in drop}
        return write_master(tmp_path / name, extensions=extensions, **merged)

    return make


@pytest.fixture
def detreg_cli():
    """Run ``nightlake detregister ARGS…`` in-process (typer's CliRunner)."""
    from typer.testing import CliRunner

    from nightlake.cli.app import app

    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, ["detregister", *[str(a) for a in args]])

    return run


def dir_state(directory: Path) -> dict[str, bytes]:
    """Every file of a directory with its bytes (to prove nothing changed)."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
