"""Shell completion of ``mtl`` (click's, issue 23 item 7): the script each shell sources, and what
it completes."""
import pytest

from mtl_platform.cli import main


def complete(monkeypatch, capsys, env: dict) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("shell, line", [("bash", "complete -o nosort -F _mtl_completion mtl"),
                                         ("zsh", "compdef _mtl_completion mtl"),
                                         ("fish", "complete --no-files --command mtl")])
def test_the_completion_script_is_produced_for_each_shell(monkeypatch, capsys, shell, line):
    script = complete(monkeypatch, capsys, {"_MTL_COMPLETE": f"{shell}_source"})
    assert line in script and "_MTL_COMPLETE" in script


def test_bash_completes_commands_options_and_kinds(monkeypatch, capsys):
    out = complete(monkeypatch, capsys, {"_MTL_COMPLETE": "bash_complete", "COMP_WORDS": "mtl tr", "COMP_CWORD": "1"})
    assert out.split() == ["plain,train"]
    out = complete(monkeypatch, capsys, {"_MTL_COMPLETE": "bash_complete", "COMP_WORDS": "mtl train --res",
                                         "COMP_CWORD": "2"})
    assert out.split() == ["plain,--resume"]
    out = complete(monkeypatch, capsys, {"_MTL_COMPLETE": "bash_complete", "COMP_WORDS": "mtl list we",
                                         "COMP_CWORD": "2"})
    assert out.split() == ["plain,weightings"]
