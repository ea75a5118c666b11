"""Helpers for the CLI tests: the test-driver node, and running vmsnap as a
real process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
VMSNAP = str(VENV_BIN / "vmsnap")
PYTHON = sys.executable

Main = Callable[..., tuple[int, str, str]]
"""The ``main`` fixture: run ``vmsnap.cli.main(args)``; (exit status, stdout, stderr)."""

# web01: a Xen guest whose disk names an LV this host does not have, and a CD-ROM;
# db01: a paused KVM guest whose disk is a /dev/mapper name with an escaped dash.
NODE_XML = """\
<node>
  <domain type='xen'><name>web01</name><memory>524288</memory><os><type>xen</type></os>
    <devices>
      <disk type='block' device='disk'><source dev='/dev/vg0/web01-root'/>\
<target dev='xvda' bus='xen'/></disk>
      <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc'/>\
<readonly/></disk>
    </devices></domain>
  <domain type='kvm' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>db01</name>\
<memory>524288</memory><os><type>hvm</type></os>
    <devices><disk type='block' device='disk'><source dev='/dev/mapper/vg0-db--01'/>\
<target dev='vda' bus='virtio'/></disk></devices>
    <test:runstate>3</test:runstate></domain>
  <pool type='logical'><name>vgpool</name><source><name>vg0</name><format type='lvm2'/>\
</source><target><path>/dev/vg0</path></target></pool>
</node>
"""


def vmsnap(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    argv0: tuple[str, ...] = (VMSNAP,),
) -> subprocess.CompletedProcess[bytes]:
    """Run the installed vmsnap; stdout and stderr are bytes."""
    return subprocess.run(
        [*argv0, *args], input=stdin, capture_output=True, env=env, timeout=60, check=False
    )


def one_line_error(stderr: bytes | str) -> str:
    """stderr must be exactly one ``vmsnap: error:`` line, with no traceback."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text, text
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("vmsnap: error: "), text
    return lines[0]


def no_traceback(stderr: bytes | str) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert "Traceback" not in text, text
    return text


def stored_objects(repo: Path) -> list[str]:
    """Every object of a repository but its config, by name (temporaries too):
    what a run that must write nothing would have left."""
    return sorted(
        str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() and p.name != "config"
    )
