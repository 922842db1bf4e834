"""Target config schema: shipped configs validate, bad ones fail with one line naming file+field."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tvm_ofa.compiler.lower import Lowering
from tvm_ofa.errors import ConfigError
from tvm_ofa.targets import list_targets, load_target, parse_target

GOOD = {"name": "t", "target": {"kind": "llvm", "mcpu": "native"}}


def test_shipped_targets_validate():
    names = {load_target(p).name for p in list_targets()}
    assert {"host-cpu", "arm-cortex-a72", "cuda-sm90"} <= names


def test_lowering_options():
    assert load_target("host-cpu-prepack").lowering == Lowering(prepack=True)
    assert load_target("host-cpu").lowering == Lowering()
    # its own name, so its records (other workloads) never mix with host-cpu's
    assert load_target("host-cpu-prepack").log_dir("logs").parent.name == "host-cpu-prepack"
    # the shipped full-width AVX-512 target: prepacked, 16-channel blocks where channels allow
    assert load_target("host-cpu-nchwc16").lowering == Lowering(prepack=True, nchwc=16)


def test_bare_name_finds_shipped_config():
    assert load_target("arm-cortex-a72").cc == "aarch64-linux-gnu-gcc"


@pytest.mark.parametrize("patch, field", [
    ({"colour": 1}, "colour"),
    ({"target": {"kind": "llvm"}, "tuning": {"trials": 3}}, "tuning.trials"),
    ({"runner": {"kind": "ssh"}}, "runner.kind"),
    ({"runner": {"kind": "rpc", "tracker_host": "h", "tracker_port": 99999, "key": "k"}},
     "runner.tracker_port"),
    ({"runner": {"kind": "rpc", "tracker_host": "h", "key": "k"}}, "runner.tracker_port"),
    ({"runner": {"kind": "local", "key": "k"}}, "runner.key"),
    ({"threads": 0}, "threads"),
    ({"threads": True}, "threads"),
    ({"tuning": {"trials_per_task": "many"}}, "tuning.trials_per_task"),
    ({"target": "llvm -mcpu=znver4"}, "target"),
    ({"target": {"mcpu": "native"}}, "target.kind"),
    ({"name": "Bad Name"}, "name"),
    ({"cc": ""}, "cc"),
    ({"prepack": "yes"}, "prepack"),
    ({"nchwc": 12}, "nchwc"),
    ({"prefer": "host-cpu-prepack"}, "prefer"),
    ({"prefer": ["Host CPU"]}, "prefer"),
    ({"target": {"kind": "fpga9000"}}, "target.kind"),
])
def test_errors_name_file_and_field(patch, field):
    with pytest.raises(ConfigError) as info:
        parse_target({**GOOD, **patch}, "my.yaml")
    msg = str(info.value)
    assert msg.startswith(f"my.yaml: {field}:"), msg
    assert "\n" not in msg


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"^my.yaml: target: required"):
        parse_target({"name": "x"}, "my.yaml")


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+: invalid YAML"):
        load_target(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_target(tmp_path / "missing.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load_target(lst)


def test_defaults_and_cross():
    cfg = parse_target(GOOD)
    assert cfg.runner == {"kind": "local"} and cfg.tuning["trials_per_task"] > 0
    assert cfg.is_native and not cfg.is_cross
    arm = load_target("arm-cortex-a72")
    assert arm.is_cross and not arm.is_native
    assert str(arm.log_dir("logs")) == "logs/arm-cortex-a72"
    cuda = load_target("cuda-sm90")
    assert cuda.is_cross and cuda.host == {"kind": "llvm"}


def test_validation_does_not_import_tvm():
    code = textwrap.dedent("""
        import sys
        from tvm_ofa.targets import list_targets, load_target
        [load_target(p) for p in list_targets()]
        from tvm_ofa.cli import build_parser
        build_parser()
        assert 'tvm' not in sys.modules and 'torch' not in sys.modules, sorted(
            m for m in sys.modules if m.startswith(('tvm.', 'torch')))
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_native_resolves_to_host_cpu():
    pytest.importorskip("tvm")
    from tvm.target import codegen

    cfg = parse_target(GOOD)
    cpu = str(codegen.llvm_get_system_cpu())
    t = cfg.resolved_target()
    assert t["mcpu"] == cpu != "native" and t["num-cores"] >= 1
    assert cfg.log_dir("tl").parts == ("tl", "t", cpu)
    assert cfg.tvm_target().attrs["mcpu"] == cpu


def test_tvm_rejects_target_one_line():
    pytest.importorskip("tvm")
    cfg = parse_target({"name": "x", "target": {"kind": "llvm", "no-such-attribute": 1}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"^x.yaml: target: TVM rejects it") as info:
        cfg.tvm_target()
    assert "\n" not in str(info.value)


def test_target_kinds_are_tvms_and_a_binary_file_is_one_line(tmp_path):
    tvm = pytest.importorskip("tvm")
    from tvm_ofa.targets import TVM_TARGET_KINDS, load_target

    assert TVM_TARGET_KINDS == set(tvm.target.Target.list_kinds())
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"name: x\n\xff\xfe\x00target")
    with pytest.raises(ConfigError, match=r"bin.yaml: not a YAML text file \(byte 8 is not UTF-8\)$"):
        load_target(bad)
