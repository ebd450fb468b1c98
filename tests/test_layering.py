"""Imports follow the architecture: no arrow against the rules, no import circle."""

from __future__ import annotations

from pathlib import Path

import layering as L

ROOT = Path(__file__).resolve().parent.parent


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for pkg in L.PACKAGES:
        for d in [root / pkg, *(p for p in (root / pkg).rglob("*") if p.is_dir())]:
            d.mkdir(parents=True, exist_ok=True)
            (d / "__init__.py").touch()
    return root


def test_the_project_follows_its_import_rules() -> None:
    found = L.arrows(ROOT)
    assert L.violations(found) == []


def test_the_project_has_no_import_circle() -> None:
    assert L.cycles(L.arrows(ROOT)) == []


def test_the_walk_sees_lazy_and_package_imports_of_the_real_tree() -> None:
    pairs = {(a.source, a.target) for a in L.arrows(ROOT)}
    # imported inside a function, and a submodule named in `from package import module`
    assert ("hil.insitu.backends", "drivers") in pairs
    assert ("drivers.serial_backend", "drivers.board") in pairs
    assert ("hil.commands.reproduce", "hil.network.reproduce") in pairs


def test_a_planted_arrow_against_each_kind_of_rule_is_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "protocols/plan.py": "import sim_backend.config\n",
            "sim_backend/config.py": "X = 1\n",
            "drivers/scpi.py": "def f():\n    from hil.cli import main\n",
            "hil/cli.py": "def main():\n    pass\n",
            "hil/network/learning.py": "def f():\n    from ..insitu import trainer\n",
            "hil/insitu/trainer.py": "from hil.characterize.fit import g\n",
            "hil/characterize/fit.py": "from hil.commands import train\n",
            "hil/commands/train.py": "from hil import cli\n",
        },
    )
    bad = "\n".join(L.violations(L.arrows(root)))
    assert "protocols.plan imports sim_backend.config" in bad
    assert "drivers.scpi imports hil.cli" in bad
    assert "hil.network.learning imports hil.insitu.trainer" in bad
    assert "hil.insitu.trainer imports hil.characterize.fit" in bad
    assert "hil.characterize.fit imports hil.commands.train" in bad
    assert "hil.commands.train imports hil.cli" in bad


def test_planted_arrows_into_and_out_of_the_sweeps_are_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "hil/insitu/report.py": "from hil.sweep import results\n",
            "hil/network/learning.py": "def f():\n    import hil.sweep.engine\n",
            "hil/characterize/fit.py": "from hil.sweep.spec import load_sweep\n",
            "hil/sweep/results.py": "X = 1\n",
            "hil/sweep/engine.py": "def f():\n    from hil.commands import train\n",
            "hil/sweep/spec.py": "from hil import cli\nfrom hil.characterize import fit\n",
            "hil/commands/train.py": "X = 1\n",
            "hil/cli.py": "X = 1\n",
        },
    )
    bad = "\n".join(L.violations(L.arrows(root)))
    assert "hil.insitu.report imports hil.sweep.results" in bad
    assert "hil.network.learning imports hil.sweep.engine" in bad
    assert "hil.characterize.fit imports hil.sweep.spec" in bad
    assert "hil.sweep.engine imports hil.commands.train" in bad
    assert "hil.sweep.spec imports hil.cli" in bad
    assert "hil.sweep.spec imports hil.characterize.fit" in bad


def test_allowed_arrows_are_not_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "protocols/plan.py": "X = 1\n",
            "sim_backend/config.py": "from protocols.plan import X\n",
            "drivers/scpi.py": "import sim_backend.config\n",
            "hil/network/learning.py": "from protocols import plan\n",
            "hil/insitu/trainer.py": "from hil.network.learning import f\n",
            "hil/characterize/fit.py": "from hil.network import learning\n",
            "hil/commands/train.py": "from hil.insitu import trainer\nimport drivers.scpi\n",
            "hil/sweep/engine.py": "from hil.insitu import trainer\nfrom hil.network import f\n",
            "hil/commands/sweep.py": "from hil.sweep import engine\n",
            "hil/cli.py": "from hil.commands import train\n",
        },
    )
    assert L.violations(L.arrows(root)) == []


def test_a_circle_through_a_lazy_import_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "sim_backend/config.py": "def r():\n    from sim_backend.fit import m\n",
            "sim_backend/fit.py": "from sim_backend.devices import b\n",
            "sim_backend/devices.py": "from sim_backend.config import C\n",
        },
    )
    assert L.cycles(L.arrows(root)) == [
        ["sim_backend.config", "sim_backend.devices", "sim_backend.fit"]
    ]
