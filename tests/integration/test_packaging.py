"""dbprobe as a user installs it: a wheel built from the tree, installed into a fresh venv,
run from another directory.

The wheel is built offline with the setuptools already installed, from a copy of the tree
(a build/ folder left in the tree could slip stale modules into it). The fresh venv sees
the system's packages (BCC is the distribution's); the other dependencies are the ones
installed where the tests run, so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from dbprobe.demo.server import ThrowawayPostgres

ROOT = Path(__file__).resolve().parents[2]
PROBES = ROOT / "probes"
# Only the tests use these; the wheel must not carry them.
TEST_ONLY_NAMES = ("ThrowawayMariaDB", "make_usdt_less_copy", "objcopy")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".build"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--no-index", "--quiet", "--disable-pip-version-check",
                  "--wheel-dir", str(work / "dist"), str(source)], cwd=work)
    assert built.returncode == 0, built.stderr
    (found,) = (work / "dist").glob("dbprobe-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; its folder."""
    venv = tmp_path_factory.mktemp("venv") / "dbprobe"
    made = _run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                cwd=venv.parent)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site_packages = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         cwd=venv.parent).stdout.strip()
    # The dependencies where the tests run, as a plain path (their .pth files, among them
    # the editable install of this tree, are not processed from there).
    Path(site_packages, "dbprobe-test-dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    done = _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                 "--disable-pip-version-check", str(wheel)], cwd=venv.parent)
    assert done.returncode == 0, done.stderr
    return venv


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    return subprocess.run(argv, cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=300)


def test_the_wheel_holds_the_package_and_the_probes_and_no_test_code(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        python_sources = [archive.read(name).decode() for name in names if name.endswith(".py")]
    data = sorted(name.rsplit("/", 1)[1] for name in names if "/data/share/dbprobe/probes/" in name)
    assert data == sorted(path.name for path in PROBES.iterdir() if path.is_file())
    top_level = {name.split("/", 1)[0] for name in names}
    assert {name for name in top_level if not name.startswith("dbprobe")} == set()
    assert "dbprobe/binary/arch/x86_64.py" in names
    assert [term for term in TEST_ONLY_NAMES if any(term in text for text in python_sources)] == []


def test_the_installed_dbprobe_runs_doctor_from_another_directory(
    require_root_bpf: None, installed: Path, pg_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(installed / "bin" / "python"), "-c",
                  "import dbprobe; from dbprobe.recipes.load import probes_dir;"
                  " print(dbprobe.__file__); print(probes_dir())"], cwd=elsewhere)
    assert where.returncode == 0, where.stderr
    module, probes = where.stdout.split()
    assert Path(module).is_relative_to(installed) and not Path(module).is_relative_to(ROOT)
    assert Path(probes) == installed / "share" / "dbprobe" / "probes"

    doctor = _run([str(installed / "bin" / "dbprobe"), "doctor", "--json"], cwd=elsewhere)
    assert doctor.returncode == 0, doctor.stderr
    assert doctor.stderr == ""
    checks = {check["check"]: check for check in map(json.loads, doctor.stdout.splitlines())}
    assert checks["bpf"]["status"] == "ok"
    ours = checks[f"postgresql pid {pg_server.pid}"]
    assert ours["status"] == "ok", ours
    assert ours["detail"].endswith("query, locks, txn via usdt"), ours
