"""execution.stack in YAML, --set and --stack: one-line errors, and what reaches the sweep."""

import json

import pytest

from mlpar.cli import main


@pytest.mark.parametrize(
    "value, rc, message",
    [
        ("3", 0, None),
        ("auto", 0, None),
        ("none", 0, None),
        ("0", 2, "execution.stack must be a positive integer, auto or null, got 0 (int)"),
        ("many", 2, "execution.stack must be a positive integer, auto or null, got 'many' (str)"),
        ("1.5", 2, "execution.stack must be a positive integer, auto or null, got 1.5 (float)"),
    ],
)
def test_stack_flag(tiny, tmp_path, capsys, value, rc, message):
    run_dir = tmp_path / "run"
    code = main(["run", str(tiny), "--stack", value, "--no-progress", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert code == rc, err
    if message:
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        return
    rows = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()][1:]
    sizes = {r["stack_size"] for r in rows}
    assert all(r["status"] == "ok" for r in rows)
    if value == "3":
        assert sizes == {3, None}  # 4 trials: a stack of 3, then 1 alone
    if value == "none":
        assert sizes == {None}


def test_stack_in_yaml_is_validated(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: b\ndata: {dataset: iris}\nexecution: {stack: -1}\n")
    assert main(["validate", str(cfg)]) == 2
    assert (
        "execution.stack must be a positive integer, auto or null, got -1"
        in capsys.readouterr().err
    )
