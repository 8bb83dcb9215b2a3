"""facetubes.errors: one-line messages for files that users name on the command line."""

from __future__ import annotations

import pytest

from facetubes.errors import ConfigError, read_text


def test_read_text_gives_one_line_reasons(tmp_path):
    ok = tmp_path / "ok.yaml"
    ok.write_text("a: 1\n", encoding="utf-8")
    assert read_text(ok, "config file", "a YAML file") == "a: 1\n"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    cases = [(tmp_path / "missing.yaml", "missing.yaml: config file not found"),
             (tmp_path, "is a folder, expected a YAML file"),
             (binary, "binary.yaml: cannot read config file (UnicodeDecodeError: ")]
    for path, message in cases:
        with pytest.raises(ConfigError) as e:
            read_text(path, "config file", "a YAML file")
        assert message in str(e.value) and "\n" not in str(e.value)
