"""Build hook for setuptools; the project's metadata and package list are in pyproject.toml.

Why this file exists: setuptools' configuration can leave out whole packages
and non-Python data files, but not one module inside a shipped package
(its ``exclude-package-data`` applies to data files only: pypa/setuptools
issue #2269). Test-only helpers that live inside a shipped package must still
never be installed; ``cds_services/security/testing.py`` forges tokens
(``alg: none``, HMAC keyed with a public key) that a verifier must refuse, and
has no place on a production server. Once such a module has moved under
``tests/``, its entry here matches nothing and does no harm.
"""
from __future__ import annotations

from setuptools import setup
from setuptools.command.build_py import build_py

# (package, module) pairs that are never installed.
TEST_ONLY_MODULES = frozenset({("cds_services.security", "testing")})


class BuildPyWithoutTestHelpers(build_py):
    """``build_py`` that drops :data:`TEST_ONLY_MODULES` from the packages it copies."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        return [
            (pkg, module, path)
            for pkg, module, path in super().find_package_modules(package, package_dir)
            if (pkg, module) not in TEST_ONLY_MODULES
        ]


setup(cmdclass={"build_py": BuildPyWithoutTestHelpers})
