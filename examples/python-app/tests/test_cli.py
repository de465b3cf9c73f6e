import io
import json

from textstats.cli import main


def test_cli_json_from_file(tmp_path, capsys):
    f = tmp_path / "in.txt"
    f.write_text("The cat and the hat.\nThe cat sat.\n", encoding="utf-8")
    assert main(["--json", "--top", "1", str(f)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["words"] == 8
    assert out["lines"] == 2
    assert out["top"] == [{"word": "cat", "count": 2}]


def test_cli_stdin_text(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a b c\n"))
    assert main([]) == 0
    assert "words: 3" in capsys.readouterr().out


def test_cli_missing_file(capsys):
    assert main(["/nonexistent/file"]) == 1
    assert "textstats:" in capsys.readouterr().err


def test_cli_rejects_negative_top(capsys):
    assert main(["--top", "-1"]) == 2
