# One-command tasks. `make demo`: see scripts/demo.py (needs the README install command first).
# `make mutation`: see scripts/mutation.py (needs requirements-mutation.txt installed into .venv).
.PHONY: demo mutation

demo:
	@test -x .venv/bin/python || { echo "no .venv: run first: python3 -m venv .venv && .venv/bin/pip install -q -r requirements-dev.txt" >&2; exit 2; }
	.venv/bin/python scripts/demo.py

# Niced and two mutants at a time: the machine's two cores are shared. A fresh mutants/ each time, so the
# summary counts this tree's mutants only.
mutation:
	@test -x .venv/bin/mutmut || { echo "no mutmut in .venv: run first: .venv/bin/pip install -q -r requirements-mutation.txt" >&2; exit 2; }
	rm -rf mutants
	nice -n 15 .venv/bin/python scripts/mutation.py run --max-children 2 $(if $(MUTANTS),'$(MUTANTS)')
	.venv/bin/python scripts/mutation.py summary
