"""`make demo` (scripts/demo.py) as a user runs it: a subprocess that starts both servers and must leave none.

The README promises the demo works from a fresh clone; these runs prove its
table lists every patient, that a wrong expectation makes it fail (so its
"OK" means something), and that Ctrl-C stops both servers it started.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.py"
PATIENTS = ROOT / "tests" / "fixtures" / "patients"
EXPECTED = json.loads((PATIENTS / "expected.json").read_text(encoding="utf-8"))


# Both servers' readiness bounds (120 s each, scripts/fhir_server.py READY_TIMEOUT) and the hook calls (seconds,
# even on a loaded machine) fit in this.
DEMO_TIMEOUT = 300.0


def run_demo(*args: str, timeout: float = DEMO_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run the demo to its end. Past ``timeout`` it gets SIGTERM, on which it stops both servers it started
    (a plain kill would leave them running, in sessions of their own), and the test fails."""
    demo = subprocess.Popen(
        [sys.executable, str(DEMO), *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = demo.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        demo.terminate()
        try:
            out, err = demo.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
            out, err = demo.communicate()
        pytest.fail(f"the demo did not finish within {timeout:.0f} s:\n{out[-3000:]}{err[-3000:]}")
    return subprocess.CompletedProcess(demo.args, demo.returncode, out, err)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def started_pids(stdout: str) -> list[int]:
    """The FHIR server's and the service's pids, as the demo announces them."""
    return [int(pid) for pid in re.findall(r"^(?:FHIR server|CDS service) .*\(pid (\d+)\)$", stdout, re.MULTILINE)]


def test_demo_lists_every_patient_ok_and_exits_0(fhir_installed):
    done = run_demo()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for patient_id in EXPECTED["patients"]:
        assert re.search(rf"^OK +{re.escape(patient_id)} ", done.stdout, re.MULTILINE), f"{patient_id} not OK in the table"
    total = len(EXPECTED["patients"])
    assert f"\n{total} patients: {total} OK, 0 MISMATCH\n" in done.stdout
    pids = started_pids(done.stdout)
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)


def test_demo_fails_on_a_mismatch(fhir_installed, tmp_path):
    wrong = {**EXPECTED, "patients": {**EXPECTED["patients"], "ixa-clean": {"rules": ["platelets-low"]}}}
    (tmp_path / "expected.json").write_text(json.dumps(wrong))
    done = run_demo("ixa-clean", "ixa-platelets-low", "--expected", str(tmp_path / "expected.json"))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^MISMATCH +ixa-clean +platelets-low +\(no cards\)", done.stdout, re.MULTILINE), done.stdout
    assert re.search(r"^OK +ixa-platelets-low ", done.stdout, re.MULTILINE)
    assert "2 patients: 1 OK, 1 MISMATCH (ixa-clean)" in done.stdout


def test_ctrl_c_stops_both_servers(fhir_installed):
    demo = subprocess.Popen(
        [sys.executable, str(DEMO)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        seen = ""
        assert demo.stdout is not None
        for line in demo.stdout:  # interrupt as soon as both servers run, before the hooks are done
            seen += line
            if line.startswith("CDS service"):
                demo.send_signal(signal.SIGINT)
                break
        rest, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    seen += rest
    assert demo.returncode == 130, seen + err
    assert "interrupted: stopping the servers" in err
    pids = started_pids(seen)
    assert len(pids) == 2, seen
    assert not any(alive(pid) for pid in pids)
    assert re.search(rf"^stopped +the CDS service \(pid {pids[1]}\) and the FHIR server \(pid {pids[0]}\)$", seen, re.MULTILINE)


def test_unknown_patient_is_refused_before_anything_starts():
    done = run_demo("ixa-nobody", timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no such patient: ixa-nobody (known: ixa-anc-bound, ixa-anc-low, ")
    assert done.stdout == ""
