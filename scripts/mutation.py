"""Mutation testing of the rules and the FHIR mappings: ``make mutation``.

    make mutation                               every mutant of [tool.mutmut] source_paths
    make mutation MUTANTS='cds_services.rules.*'  only those (mutant names are module.function globs)
    .venv/bin/python scripts/mutation.py summary     rewrite tests/mutation/summary.md

mutmut (pinned in requirements-mutation.txt; configured in pyproject.toml,
``[tool.mutmut]``) copies the code into ``mutants/``, writes every mutant into
it and runs, for each mutant, the tests that reach the mutated function.

mutmut 3 leaves every *decorated* function unmutated, because a decorator may
register the function again for each copy it makes. Here that would leave the
clinical rules out: every rule body is registered with ``@rule("code")``, and
the hot FHIR readers are remembered with ``functools.cache``/``lru_cache``.
Neither decorator has a side effect beyond wrapping, so ``run`` lets mutmut
mutate functions whose decorators are all in :data:`WRAPPERS`: the copies it
makes (the original and each mutant) are written undecorated, and only the
function under the original name (mutmut's trampoline, which calls the active
copy) keeps the decorators. A rule is still registered once, under its code;
a cache remembers what the active mutant computes, because each mutant runs
in a process forked from a server that ran no test (``process_isolation =
"forkserver"``), so no cache holds what the original computed.

``summary`` counts mutmut's results and lists every mutant that was not
killed with its justification from ``tests/mutation/justified.txt`` (one line
a mutant, or a glob of mutants of one function: ``name<TAB>why``); a survivor
without one is listed as open.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from fnmatch import fnmatch
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeAlias

import libcst as cst
from libcst.metadata import PositionProvider
from mutmut.__main__ import cli
from mutmut.configuration import config
from mutmut.mutation import file_mutation
from mutmut.mutation.data import SourceFileMutationData
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tests" / "mutation"
JUSTIFIED = RESULTS / "justified.txt"
SUMMARY = RESULTS / "summary.md"

Statement: TypeAlias = Any  # file_mutation.MODULE_STATEMENT: libcst's statement node types (mypy skips libcst)
OPEN = "open: no test kills it yet, and it is not shown equivalent"

# Decorators that only wrap the function they are given: safe on the trampoline alone.
WRAPPERS = frozenset({"rule", "cache", "lru_cache"})


def _wrapper_name(decorator: cst.Decorator) -> str | None:
    node = decorator.decorator
    if isinstance(node, cst.Call):
        node = node.func
    return node.value if isinstance(node, cst.Name) else None


def _only_wrappers(function: cst.FunctionDef) -> bool:
    return bool(function.decorators) and all(_wrapper_name(d) in WRAPPERS for d in function.decorators)


def _patch_mutmut() -> None:
    visitor = file_mutation.MutationVisitor
    skip = visitor._skip_node_and_children
    arrange = file_mutation.function_trampoline_arrangement

    def skip_unless_wrapped(self: file_mutation.MutationVisitor, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.FunctionDef) and _only_wrappers(node):
            position = self.get_metadata(PositionProvider, node, None)
            pragma = position is not None and position.start.line in self._ignored_node_lines
            if not pragma and node.name.value not in file_mutation.NEVER_MUTATE_FUNCTION_NAMES:
                return False  # judged like an undecorated function; its decorators are still never mutated
        return skip(self, node)

    def arrange_wrapped(
        function: cst.FunctionDef, mutants: Iterable[file_mutation.Mutation], class_name: str | None
    ) -> tuple[Sequence[Statement], Sequence[Statement], Sequence[Statement], Sequence[str]]:
        if not _only_wrappers(function):
            return arrange(function, mutants, class_name)
        # The body's nodes are shared by the undecorated copy, so each mutation still finds its node.
        declarations, nodes, assignments, names = arrange(function.with_changes(decorators=[]), mutants, class_name)
        trampoline, *copies = nodes
        assert isinstance(trampoline, cst.FunctionDef)
        trampoline = trampoline.with_changes(decorators=[*function.decorators, *trampoline.decorators])
        return declarations, [trampoline, *copies], assignments, names

    visitor._skip_node_and_children = skip_unless_wrapped  # the patch is the point
    file_mutation.function_trampoline_arrangement = arrange_wrapped


def run(max_children: int, names: list[str]) -> int:
    _patch_mutmut()
    try:
        cli.main(["run", "--max-children", str(max_children), *names], prog_name="mutmut", standalone_mode=False)
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def _results() -> dict[str, str]:
    statuses: dict[str, str] = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, exit_code in data.exit_code_by_key.items():
            statuses[name] = status_by_exit_code[exit_code]
    return statuses


def _justified() -> dict[str, str]:
    reasons: dict[str, str] = {}
    if JUSTIFIED.exists():
        for line in JUSTIFIED.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, why = line.partition("\t")
                reasons[name.strip()] = why.strip()
    return reasons


def summary() -> int:
    statuses = _results()
    if not statuses:
        print("no results in mutants/: run `make mutation` first", file=sys.stderr)
        return 1
    counts = Counter(statuses.values())
    killed = counts["killed"] + counts["timeout"]
    tested = sum(counts.values()) - counts["not checked"] - counts["skipped"]
    score = killed / tested if tested else 0.0
    reasons = _justified()
    scope = ", ".join(str(p) for p in config().source_paths)
    ran = sorted({name.split(".x")[0] for name, status in statuses.items() if status != "not checked"})
    left = sorted({name.split(".x")[0] for name, status in statuses.items() if status == "not checked"})
    lines = [
        "# Mutation testing: results",
        "",
        f"Scope: {scope} (mutmut {version('mutmut')}, `make mutation`; configuration in pyproject.toml, "
        "[tool.mutmut]). Written by `scripts/mutation.py summary`; justifications from justified.txt.",
        "",
        f"Tests run for each mutant (those of its selection that reach the mutated function): "
        f"{', '.join(config().pytest_add_cli_args_test_selection)}.",
        "",
        f"Modules run: {', '.join(ran) or 'none'}.",
        f"Modules not run (their mutants are 'not checked' and left out of the score): {', '.join(left) or 'none'}.",
        "",
        f"- mutants: {sum(counts.values())}",
        f"- killed: {killed} (of which timeout: {counts['timeout']})",
        f"- survived: {counts['survived']}",
        *(f"- {status}: {n}" for status, n in sorted(counts.items())
          if status not in {"killed", "timeout", "survived"}),
        f"- score: {score:.1%} (killed / mutants tested)",
        "",
        "## Not killed, and why (open: still to kill or to show equivalent)",
        "",
    ]
    for name, status in sorted(statuses.items()):
        if status in {"killed", "timeout", "not checked"}:
            continue
        why = next((why for pattern, why in reasons.items() if fnmatch(name, pattern)), OPEN)
        lines.append(f"- `{name}` ({status}): {why}")
    SUMMARY.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{SUMMARY.relative_to(ROOT)}: {killed}/{tested} killed, {score:.1%}")
    return 0




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run mutmut over [tool.mutmut] source_paths")
    run_parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    run_parser.add_argument("names", nargs="*", help="only mutants matching these globs ('cds_services.rules.*')")
    commands.add_parser("summary", help="write tests/mutation/summary.md from mutmut's results")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.max_children, args.names)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
