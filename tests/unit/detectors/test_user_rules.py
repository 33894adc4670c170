"""Users' own detectors: rule files and entry points, loaded and checked like built-ins.

Every case writes real files (rule modules, a ``*.dist-info`` with ``entry_points.txt``
on ``sys.path``) and goes through the real loader; nothing stands in for it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.commands.rules import RULE_TEMPLATE
from pipeline.detectors import registry
from pipeline.settings import get_settings

GOOD = RULE_TEMPLATE.format(id="ACME-01", module="acme_01")


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


@pytest.fixture
def rules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A GOVPIPE_RULES_DIR of this process; the registry forgets it afterwards."""
    folder = tmp_path / "rules"
    folder.mkdir()
    monkeypatch.setenv("GOVPIPE_RULES_DIR", str(folder))
    get_settings.cache_clear()
    registry.reset()
    yield folder
    monkeypatch.delenv("GOVPIPE_RULES_DIR")
    get_settings.cache_clear()
    registry.reset()


def problem(folder: Path, text: str, name: str = "acme_01.py") -> str:
    (folder / name).write_text(text)
    with pytest.raises(registry.RegistryError) as caught:
        registry.rules_dir_entries(folder)
    return str(caught.value)


def test_rules_dir_detectors_join_the_registry(rules_dir: Path) -> None:
    (rules_dir / "acme_01.py").write_text(GOOD)
    (rules_dir / "_helpers.py").write_text("raise RuntimeError('helpers are not imported')\n")
    (rules_dir / "test_acme_01.py").write_text("raise RuntimeError('tests are not rules')\n")
    (rules_dir / "notes.txt").write_text("not python\n")
    entry = registry.entry_of("ACME-01")
    assert entry is not None and entry.origin == "rules dir"
    assert entry.file == str((rules_dir / "acme_01.py").resolve())
    assert "ACME-01" in {d.spec.id for d in registry.all_detectors()}
    assert "ACME-01" in {d.spec.id for d in registry.detectors_for("action")}
    assert registry.describe(entry).startswith("user rule (GOVPIPE_RULES_DIR) ")
    assert "ACME-01" not in registry.detector_modules()  # built-ins only


def test_routing_and_engine_see_a_user_rule(rules_dir: Path) -> None:
    """Stage 1 routes what only a user rule needs; the engine runs it."""
    from pipeline.detectors.engine import DetectionEngine

    event = {"event_type": "task.started", "identity_id": "a", "on_behalf_of": "alice"}
    assert ("requester", "alice") not in registry.subject_kinds_for(event)  # no built-in
    rule = GOOD.replace('subject="identity"', 'subject="requester"').replace(
        'frozenset({"action"})', 'frozenset({"task.started"})'
    )
    (rules_dir / "acme_01.py").write_text(rule)
    registry.reset()
    engine = DetectionEngine()
    assert "ACME-01" in engine.enabled_ids
    assert ("requester", "alice") in engine.subject_kinds_for(event)


@pytest.mark.parametrize(
    ("edit", "needle", "message"),
    [
        (('id="ACME-01"', 'id="acme 1"'), 'id="acme 1"', "invalid spec: bad id 'acme 1'"),
        (('subject="identity"', 'subject="user"'), "subject=", "unknown subject kind 'user'"),
        (
            ('frozenset({"action"})', "frozenset()"),
            "event_types=",
            "invalid spec: event_types is empty",
        ),
        (
            ('frozenset({"action"})', 'frozenset({"action", "actoin"})'),
            "event_types=",
            "unknown event type 'actoin'",
        ),
        (('severity="medium"', 'severity="urgent"'), "severity=", "unknown severity 'urgent'"),
        (("DETECTOR = single_event(SPEC, judge=judge)", "DETECTOR = SPEC"), "DETECTOR =", ""),
    ],
)
def test_invalid_specs_name_file_and_line(
    tmp_path: Path, edit: tuple[str, str], needle: str, message: str
) -> None:
    text = GOOD.replace(*edit)
    assert text != GOOD
    error = problem(tmp_path, text)
    assert error.startswith(f"{tmp_path / 'acme_01.py'}:{line_of(text, needle)}: "), error
    assert message in error
    assert "\n" not in error


def test_syntax_error_names_its_line(tmp_path: Path) -> None:
    text = GOOD.replace("def judge(", "def judge(:")
    error = problem(tmp_path, text)
    assert error.startswith(f"{tmp_path / 'acme_01.py'}:{line_of(text, 'def judge(:')}: ")
    assert "syntax error" in error


def test_import_error_names_the_failing_line(tmp_path: Path) -> None:
    text = GOOD.replace(
        "from pipeline.detectors.kinds import",
        "import acme_not_installed\nfrom pipeline.detectors.kinds import",
    )
    error = problem(tmp_path, text)
    line = line_of(text, "import acme_not_installed")
    assert error == (
        f"{tmp_path / 'acme_01.py'}:{line}: cannot import: "
        "ModuleNotFoundError: No module named 'acme_not_installed'"
    )


def test_exception_at_import_names_the_rule_line(tmp_path: Path) -> None:
    text = GOOD.replace(
        "DETECTOR = single_event(SPEC, judge=judge)", "DETECTOR = single_event(SPEC)"
    )
    error = problem(tmp_path, text)
    assert error.startswith(f"{tmp_path / 'acme_01.py'}:{line_of(text, 'DETECTOR =')}: ")
    assert "TypeError" in error and "single_event needs match and facts" in error


def test_missing_detector(tmp_path: Path) -> None:
    text = GOOD.replace("DETECTOR = single_event(SPEC, judge=judge)", "")
    assert problem(tmp_path, text) == (
        f"{tmp_path / 'acme_01.py'}:1: no DETECTOR (a rule file exports DETECTOR = ...; "
        "helper files start with _)"
    )


def test_failed_import_leaves_no_module_behind(tmp_path: Path) -> None:
    problem(tmp_path, GOOD + "\nraise RuntimeError('boom')\n", name="zz_broken.py")
    assert "govpipe_rule_zz_broken" not in sys.modules


def test_id_of_a_builtin_is_refused_naming_both(tmp_path: Path) -> None:
    text = GOOD.replace('id="ACME-01"', 'id="SP-01"')
    (tmp_path / "mine.py").write_text(text)
    with pytest.raises(registry.RegistryError) as caught:
        registry.combine([*registry.builtin_entries(), *registry.rules_dir_entries(tmp_path)])
    assert str(caught.value) == (
        f"detector id SP-01 in both pipeline/detectors/sp01_long_lived_credential.py:"
        f"{registry.entry_of('SP-01').where().rpartition(':')[2]} and "  # type: ignore[union-attr]
        f"{tmp_path / 'mine.py'}:{line_of(text, 'id=')}"
    )


def test_two_rule_files_with_one_id(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(GOOD)
    (tmp_path / "b.py").write_text(GOOD)
    line = line_of(GOOD, 'id="ACME-01"')
    with pytest.raises(registry.RegistryError, match="detector id ACME-01 in both") as caught:
        registry.combine(registry.rules_dir_entries(tmp_path))
    assert f"a.py:{line} and " in str(caught.value) and f"b.py:{line}" in str(caught.value)


def test_a_bad_rules_dir_stops_the_registry(rules_dir: Path) -> None:
    (rules_dir / "acme_01.py").write_text(GOOD.replace('subject="identity"', 'subject="user"'))
    with pytest.raises(registry.RegistryError, match="unknown subject kind"):
        registry.all_detectors()


# -- entry points: a real distribution's metadata on sys.path -----------------------------


@pytest.fixture
def distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Install a package the way pip leaves it: modules plus ``*.dist-info`` metadata."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    registry.reset()

    def install(modules: dict[str, str], entry_points: str, name: str = "acme_rules") -> Path:
        package = site / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        for module, text in modules.items():
            (package / f"{module}.py").write_text(text)
        info = site / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[govpipe.detectors]\n{entry_points}\n")
        return package

    yield install
    for module in [m for m in sys.modules if m.startswith("acme_rules")]:
        del sys.modules[module]
    registry.reset()


def test_entry_points_load_a_module_or_a_detector(distribution: Callable[..., Path]) -> None:
    other = GOOD.replace('id="ACME-01"', 'id="ACME-02"')
    distribution(
        {"export": GOOD, "other": other},
        "export = acme_rules.export\nother = acme_rules.other:DETECTOR",
    )
    found = {e.id: e for e in registry.entry_point_entries()}
    assert set(found) == {"ACME-01", "ACME-02"}
    assert found["ACME-01"].source == "export = acme_rules.export (acme_rules)"
    assert found["ACME-02"].source == "other = acme_rules.other:DETECTOR (acme_rules)"
    assert {"ACME-01", "ACME-02"} <= {d.spec.id for d in registry.all_detectors()}
    assert registry.describe(found["ACME-01"]) == (
        "entry point export = acme_rules.export (acme_rules)"
    )


def test_entry_point_problems_name_the_entry_point_and_line(
    distribution: Callable[..., Path],
) -> None:
    text = GOOD.replace('severity="medium"', 'severity="urgent"')
    package = distribution({"export": text}, "export = acme_rules.export")
    with pytest.raises(registry.RegistryError) as caught:
        registry.entry_point_entries()
    where = f"{package / 'export.py'}:{line_of(text, 'severity=')}"
    assert str(caught.value) == (
        f"entry point export = acme_rules.export (acme_rules) ({where}): invalid spec: "
        "unknown severity 'urgent' (one of ('low', 'medium', 'high', 'critical'))"
    )


def test_entry_point_that_fails_to_import(distribution: Callable[..., Path]) -> None:
    package = distribution({"export": "import acme_missing\n"}, "export = acme_rules.export")
    with pytest.raises(registry.RegistryError) as caught:
        registry.entry_point_entries()
    assert str(caught.value) == (
        f"entry point export = acme_rules.export (acme_rules): {package / 'export.py'}:1: "
        "cannot import: ModuleNotFoundError: No module named 'acme_missing'"
    )


def test_entry_point_colliding_with_a_rules_dir_file(
    distribution: Callable[..., Path], rules_dir: Path
) -> None:
    distribution({"export": GOOD}, "export = acme_rules.export")
    (rules_dir / "acme_01.py").write_text(GOOD)
    with pytest.raises(registry.RegistryError) as caught:
        registry.entries()
    message = str(caught.value)
    assert message.startswith("detector id ACME-01 in both entry point export = acme_rules")
    assert message.endswith(f"and {rules_dir / 'acme_01.py'}:{line_of(GOOD, 'id=')}")
