"""The malformed-config corpus: every file fails with exactly the lines it expects.

Each file in ``tests/bad_configs/`` starts with one or more lines
``# expect: <error line>``, where ``{file}`` stands for the path given to the
loader, and ``{datasets}``, ``{activations}``, ``{solvers}`` and ``{backends}``
for the names the owning modules define (so that adding a backend does not
rewrite the corpus). Each file goes through ``load_config`` and through the
CLI's ``mlpar validate``, which must print exactly those lines on stderr and
exit with code 2, never a traceback.
"""

from pathlib import Path

import pytest

from mlpar.config import ConfigError, load_config

CORPUS = Path(__file__).resolve().parent.parent / "bad_configs"
PREFIX = b"# expect: "
FILES = sorted(p for p in CORPUS.glob("*.yaml") if p.is_file())


def _names():
    from mlpar.backends import available_backends
    from mlpar.data import DATASETS
    from mlpar.nn import ACTIVATIONS, SOLVERS

    return {
        "datasets": ", ".join(DATASETS),
        "activations": ", ".join(ACTIVATIONS),
        "solvers": ", ".join(SOLVERS),
        "backends": ", ".join(available_backends()),
    }


def expected_lines(path, template_lines):
    names = _names()
    lines = []
    for template in template_lines:
        line = template.replace("{file}", str(path))
        for key, value in names.items():
            line = line.replace("{" + key + "}", value)
        lines.append(line)
    return lines


def corpus_expectations(path):
    # Bytes, not text: one file of the corpus is deliberately not UTF-8.
    templates = []
    for raw in path.read_bytes().split(b"\n"):
        if not raw.startswith(PREFIX):
            break
        templates.append(raw[len(PREFIX) :].decode("utf-8"))
    return expected_lines(path, templates)


# Cases a file cannot hold: a directory named like a config, a missing file,
# and a file with no bytes at all (a comment would make it "only comments").
def _table_cases(tmp_path):
    empty = tmp_path / "zero_bytes.yaml"
    empty.write_bytes(b"")
    return {
        "a_directory": (
            CORPUS / "a_directory.yaml",
            ["{file}: is a directory, expected a YAML file"],
        ),
        "missing_file": (CORPUS / "no_such_config.yaml", ["{file}: no such file"]),
        "zero_bytes": (
            empty,
            [
                "{file}: file is empty; expected a mapping with keys name, data, "
                "model, train, sweep, execution, compare, output"
            ],
        ),
    }


def test_corpus_is_large_and_every_file_states_its_errors():
    assert len(FILES) >= 45
    for path in FILES:
        assert corpus_expectations(path), f"{path.name} has no '# expect:' line"
    assert (CORPUS / "a_directory.yaml").is_dir()
    assert not (CORPUS / "no_such_config.yaml").exists()


def _check_lines(path, lines):
    for line in lines:
        assert line.startswith(f"{path}: "), line  # names the file first
        assert "\n" not in line and "Traceback" not in line


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_load_config_reports_exactly_the_expected_lines(path):
    expected = corpus_expectations(path)
    _check_lines(path, expected)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == expected
    assert str(info.value) == "\n".join(expected)


@pytest.mark.parametrize("case", ["a_directory", "missing_file", "zero_bytes"])
def test_load_config_reports_file_problems(tmp_path, case):
    path, templates = _table_cases(tmp_path)[case]
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == expected_lines(path, templates)


def _validate(path, capsys):
    from mlpar.cli import main

    rc = main(["validate", str(path)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_cli_validate_prints_one_line_per_error_and_exits_2(path, capsys):
    rc, out, err = _validate(path, capsys)
    assert rc == 2
    assert "Traceback" not in out + err
    assert err.splitlines() == corpus_expectations(path)
    assert out == ""


@pytest.mark.parametrize("case", ["a_directory", "missing_file", "zero_bytes"])
def test_cli_validate_reports_file_problems(tmp_path, capsys, case):
    path, templates = _table_cases(tmp_path)[case]
    rc, out, err = _validate(path, capsys)
    assert rc == 2
    assert err.splitlines() == expected_lines(path, templates)
