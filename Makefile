# One-command tasks. `make demo`: see scripts/demo.py (needs the README install command first).
.PHONY: demo

demo:
	@test -x .venv/bin/python || { echo "no .venv: run first: python3 -m venv .venv && .venv/bin/pip install -q -r requirements-dev.txt" >&2; exit 2; }
	.venv/bin/python scripts/demo.py
