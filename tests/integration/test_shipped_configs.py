"""The configs we ship parse: the example (installed by make install) and
the newcomer's dev config; a broken one is reported with file:line."""

import os
import subprocess

import pytest

from conftest import REPO


@pytest.mark.parametrize("name", ["sluice.conf.example", "dev.conf"])
def test_shipped_config_parses(sluiced_bin, name):
    path = os.path.join(REPO, "conf", name)
    out = subprocess.run([sluiced_bin[0], "-n", "-c", path], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "config ok" in out.stdout


def test_check_mode_reports_every_error(sluiced_bin, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("listener 127.0.0.1:2525 {\n  max-recipients lots\n}\nfrobnicate yes\n")
    out = subprocess.run([sluiced_bin[0], "-n", "-c", str(conf)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert '%s:2: max-recipients: "lots": expected a non-negative integer' % conf in out.stderr
    assert '%s:4: unknown directive "frobnicate"' % conf in out.stderr
