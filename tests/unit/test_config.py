"""The configuration file: known keys, typed values, one clear error naming the
key (and line), and where it is looked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmsnap import config
from vmsnap.errors import ConfigError, ExitCode, NotFoundError
from vmsnap.models import QuiesceMode, SizeSpec
from vmsnap.retention import Policy

EXAMPLE = Path(__file__).parents[2] / "vmsnap" / "data" / "vmsnap.toml.example"


def load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "vmsnap.toml"
    path.write_text(text)
    return config.load(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.exit_code == ExitCode.USAGE
    return str(info.value)


def test_every_key(tmp_path: Path) -> None:
    got = load(
        tmp_path,
        """
connect = "qemu:///system"
dest = "/srv/backup"
quiesce = "freeze"
snapshot_size = "25%"
level = 6
thin_pool_limit = 85
hooks_dir = "/etc/vmsnap/hooks.d"

[retention]
keep_daily = 7
keep_weekly = 4

[guests.web01]
exclude = ["vdb", "vdc"]

[guests."db-01"]
exclude = []
""",
    )
    assert got.connect == "qemu:///system"
    assert got.dest == "/srv/backup"
    assert got.quiesce is QuiesceMode.FREEZE
    assert got.snapshot_size == SizeSpec(percent=25.0)
    assert (got.level, got.thin_pool_limit) == (6, 85)
    assert got.hooks_dir == Path("/etc/vmsnap/hooks.d")
    assert got.retention == Policy(keep_daily=7, keep_weekly=4)
    assert got.excludes == {("web01", "vdb"), ("web01", "vdc")}
    assert got.excludes_for({"web01"}) == got.excludes
    assert got.excludes_for({"db-01"}) == set()


def test_an_empty_file_sets_nothing(tmp_path: Path) -> None:
    got = load(tmp_path, "# nothing\n")
    assert got == config.Config(path=tmp_path / "vmsnap.toml")
    assert got.retention is None


def test_the_shipped_example_loads() -> None:
    got = config.load(EXAMPLE)
    assert got.dest is not None
    assert got.retention is not None
    assert not got.retention.empty


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ('dset = "/x"\n', ":1: dset: unknown key (known: connect, dest,"),
        ('\n\nlevel = "3"\n', ":3: level: must be a whole number from 1 to 19, not '3'"),
        ("level = 20\n", ":1: level: must be a whole number from 1 to 19, not 20"),
        ("level = true\n", "level: must be a whole number"),
        ('quiesce = "suspend"\n', "quiesce: 'suspend' is not one of auto, freeze, pause, none"),
        ('snapshot_size = "lots"\n', "snapshot_size: bad size 'lots'"),
        ("[retention]\nkeep_last = 2\nkeep_yearly = 1\n", ":3: retention.keep_yearly: unknown"),
        ("[retention]\nkeep_daily = -1\n", ":2: retention.keep_daily: must be a whole number"),
        ('retention = "daily"\n', "retention: must be a table"),
        ("[guests.web01]\nexclude = 'vdb'\n", ":2: guests.web01.exclude: must be a list"),
        ("[guests.web01]\nexlude = ['vdb']\n", ":2: guests.web01.exlude: unknown key"),
        ("[guests]\nweb01 = 1\n", "guests.web01: must be a table"),
    ],
)
def test_a_bad_value_names_the_key_and_line(tmp_path: Path, text: str, wanted: str) -> None:
    message = error(tmp_path, text)
    assert message.startswith(str(tmp_path / "vmsnap.toml")), message
    assert wanted in message, message


def test_not_toml_gives_tomllibs_line_and_column(tmp_path: Path) -> None:
    message = error(tmp_path, 'dest = "/srv"\nlevel 3\n')
    assert "not valid TOML" in message
    assert "line 2, column" in message


def test_where_it_is_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine, env = tmp_path / "a.toml", tmp_path / "b.toml"
    mine.write_text("")
    env.write_text("")
    monkeypatch.setenv("VMSNAP_CONFIG", str(env))
    assert config.find(mine) == mine
    assert config.find(None) == env
    monkeypatch.setenv("VMSNAP_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(NotFoundError, match=r"missing\.toml does not exist"):
        config.find(None)
    monkeypatch.delenv("VMSNAP_CONFIG")
    monkeypatch.setattr(config, "DEFAULT_PATH", tmp_path / "absent.toml")
    assert config.find(None) is None
    monkeypatch.setattr(config, "DEFAULT_PATH", mine)
    assert config.find(None) == mine
