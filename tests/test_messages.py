"""What check_params and `python studies/run.py` say about params that a hand or an editor
got wrong: each problem named once, every one in the same pass, and never a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_stage
from workspace import ROOT, Workspace

PARAMS = (ROOT / "params.yaml").read_text()


def check(folder: Path, text: str | bytes) -> str:
    """check_params on a params.yaml of `text`: it fails with one message; return it."""
    folder.mkdir(exist_ok=True)
    path = folder / "params.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = run_stage(folder, "check_params")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_a_file_that_is_not_utf8_is_named_with_the_line(tmp_path: Path) -> None:
    message = check(tmp_path, PARAMS.encode() + b"# caf\xe9\n")
    line = PARAMS.count("\n") + 1
    assert message == (f"error: params.yaml is not UTF-8 text: byte 0xe9 on line {line} is not a character; "
                       "save the file as UTF-8\n")


def test_a_section_given_twice_is_named_with_both_lines(tmp_path: Path) -> None:
    first = PARAMS.splitlines().index("study:") + 1
    message = check(tmp_path, PARAMS + "study:\n  seeds: [0]\n")
    line = PARAMS.count("\n") + 1
    assert (f"line {line}: 'study' is given again (first on line {first}); YAML would keep only the last one: "
            "merge them into one") in message


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_number_that_is_not_finite_is_called_so(tmp_path: Path, value: str) -> None:
    network = ("  res: {family: mlp, hidden_units: [8, 8, 8], residual: true, branch_layers: 1, "
               f"branch_scale: {value}}}\n")
    text = PARAMS.replace("networks:\n", "networks:\n" + network, 1)
    message = check(tmp_path, text)
    assert f"networks.res.branch_scale = {yaml.safe_load(value)}: Input should be a finite number" in message
    assert "less than or equal" not in message


def test_a_word_of_a_choice_suggests_the_choices_holding_it(tmp_path: Path) -> None:
    text = PARAMS.replace("mode: fan_avg, distribution: uniform}", "mode: fan_avg, distribution: normal}", 1)
    assert text != PARAMS
    message = check(tmp_path, text)
    assert "distribution = 'normal'" in message
    assert "Did you mean 'truncated_normal' or 'untruncated_normal'?" in message


def test_a_rule_within_a_section_is_reported_beside_a_bad_key_of_it(tmp_path: Path) -> None:
    text = PARAMS.replace("\n  epochs: 20", "\n  epochs: 0", 1).replace("\n  momentum: 0.0", "\n  momentum: 0.9", 1)
    assert text.count("epochs: 0") == 1 and "momentum: 0.9" in text
    message = check(tmp_path, text)
    assert "train.epochs = 0: Input should be greater than 0" in message
    assert "train.momentum and train.nesterov apply to sgd only; set them to 0 and false for adam" in message


def test_a_typo_in_a_study_file_is_named_there_without_a_traceback(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "repo")
    (workspace.path / "studies").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "studies" / "run.py", workspace.path / "studies" / "run.py")
    (workspace.path / "studies" / "typo.yaml").write_text("study:\n  seed: [0]\n")
    workspace.commit("a study with a typo")
    result = subprocess.run([sys.executable, "studies/run.py", "typo"], cwd=workspace.path, env=workspace.env,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "invalid params.yaml with the overrides of studies/typo.yaml:" in result.stderr
    assert "study.seed: unknown key" in result.stderr and "Did you mean 'seeds'?" in result.stderr
    assert workspace.run("git", "worktree", "list").stdout.count("\n") == 1


def test_a_study_too_big_for_dvc_is_refused_with_the_bound_and_why(tmp_path: Path) -> None:
    text = PARAMS.replace("\n  seeds: [0, 1, 2]", "\n  seeds: [" + ", ".join(map(str, range(5000))) + "]", 1)
    assert text != PARAMS
    message = check(tmp_path, text)
    assert "study: 60,000 runs (1 network(s) × 12 initializer(s) × 5000 seed(s)); at most 1,000:" in message
