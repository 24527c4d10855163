"""The wheel carries the deployables: integrations/ (NeMo Guardrails folders, the LangGraph
app) is copied into guard_plugin/deployables/ at build time, so ``guard-plugin init`` can
write them for a user who installed the package. Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithDeployables(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "integrations"
        if source.is_dir():
            shutil.copytree(
                source,
                Path(self.build_lib) / "guard_plugin" / "deployables",
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".langgraph_api"),
            )


setup(cmdclass={"build_py": BuildWithDeployables})
