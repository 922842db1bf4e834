import json
import subprocess
import sys
import time


from tvm_ofa import save_supernet
from tvm_ofa.cli import main


def test_help_lists_the_verbs_quickly():
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "tvm_ofa.cli", "--help"], capture_output=True, text=True, check=True)
    assert time.perf_counter() - start < 5  # no torch/tvm import for --help
    for verb in ("subnet", "demo"):
        assert verb in out.stdout
    version = subprocess.run([sys.executable, "-m", "tvm_ofa.cli", "--version"], capture_output=True, text=True,
                             check=True)
    from tvm_ofa import __version__

    assert version.stdout.strip() == f"tvm-ofa {__version__}"


def test_subnet_prints_params_macs_and_shape(tiny_supernet, tmp_path, capsys):
    ckpt = save_supernet(tiny_supernet, tmp_path / "net.pt")
    arch_file = tmp_path / "arch.json"
    assert main(["subnet", "--arch", "random:1", "--checkpoint", str(ckpt), "--save-arch", str(arch_file),
                 "--save-module", str(tmp_path / "sub.pt2")]) == 0
    text = capsys.readouterr().out
    assert "params" in text and "MACs" in text and "output [1, 10]" in text
    assert (tmp_path / "sub.pt2").stat().st_size > 0
    assert main(["subnet", "--arch", str(arch_file), "--checkpoint", str(ckpt), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output_shape"] == [1, 10] and info["arch"] == json.loads(arch_file.read_text())


def test_user_errors_are_one_line(tiny_supernet, tmp_path, capsys):
    ckpt = save_supernet(tiny_supernet, tmp_path / "net.pt")
    bad = tmp_path / "arch.json"
    bad.write_text(json.dumps({"ks": [9] * 20, "e": [3] * 20, "d": [2] * 5, "resolution": 32}))
    assert main(["subnet", "--arch", str(bad), "--checkpoint", str(ckpt)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "tvm-ofa subnet: error: arch.ks[0] = 9: allowed 3, 5, 7"
    assert main(["subnet", "--arch", "smallest", "--checkpoint", str(tmp_path / "missing.pt")]) == 1
    assert "missing.pt: no such checkpoint file" in capsys.readouterr().err


def test_bench_runtime_refuses_a_resolution_outside_the_checkpoint_in_one_line(tiny_supernet, tmp_path):
    from pathlib import Path

    ckpt = save_supernet(tiny_supernet, tmp_path / "net.pt")
    script = Path(__file__).resolve().parents[1] / "bench" / "bench_runtime.py"
    run = subprocess.run([sys.executable, str(script), "--checkpoint", str(ckpt), "--resolutions", "160",
                          "--no-tune", "--out", str(tmp_path / "b.md")], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"{ckpt}: its space has no resolution [160] (it has [32, 40, 48]); pass --resolutions from those"]
    assert not (tmp_path / "b.md").exists()


def test_bench_runtime_takes_one_seed_cpu_or_one_per_target(tmp_path):
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "bench_runtime.py"
    run = subprocess.run([sys.executable, str(script), "--target", "host-cpu-prepack", "host-cpu-nchwc16",
                          "--seed-from", "znver4", "emeraldrapids", "rocketlake", "--out", str(tmp_path / "b.md")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == ["--seed-from: 3 CPUs for 2 targets: give one, or one per --target"]


def test_subnet_exports_onnx_that_onnx_runtime_runs_as_pytorch_does(tiny_supernet, tmp_path, capsys):
    import numpy as np
    import pytest
    import torch

    ort = pytest.importorskip("onnxruntime")
    ckpt = save_supernet(tiny_supernet, tmp_path / "net.pt")
    arch_file, onnx_file = tmp_path / "arch.json", tmp_path / "model.onnx"
    assert main(["subnet", "--arch", "random:2", "--checkpoint", str(ckpt), "--save-arch", str(arch_file),
                 "--save-onnx", str(onnx_file)]) == 0
    assert "wrote ONNX model" in capsys.readouterr().out
    from tvm_ofa.arch import ArchConfig

    arch = ArchConfig.from_json(arch_file)
    x = np.random.default_rng(0).standard_normal((1, 3, arch.resolution, arch.resolution)).astype("float32")
    with torch.no_grad():
        want = tiny_supernet.extract(arch).eval()(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(got - want).max() <= 1e-4


def test_json_on_every_reporting_verb_keeps_stdout_to_the_document(tiny_supernet, tmp_path, capsys):
    """Every verb that reports takes --json: stdout carries one JSON document, the text report
    goes to stderr, and a failure prints {"error": ...} with exit status 1."""
    import argparse

    from tvm_ofa.cli import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    reporting = ("subnet", "targets", "compile", "run", "bench", "tune", "search", "specialize", "calibrate",
                 "accuracy", "latency")
    for verb in reporting:
        sub = verbs[verb]
        actions = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        parsers = list(actions[0].choices.values()) if actions else [sub]
        for p in parsers:
            assert any("--json" in a.option_strings for a in p._actions), f"{p.prog} has no --json"

    assert main(["targets", "--json"]) == 0
    out = capsys.readouterr()
    names = {t["name"] for t in json.loads(out.out)["targets"]}
    assert "host-cpu" in names and "host-cpu" in out.err  # the table still printed, to stderr

    ckpt = save_supernet(tiny_supernet, tmp_path / "net.pt")
    assert main(["subnet", "--arch", "smallest", "--checkpoint", str(ckpt), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["output_shape"] == [1, 10] and "MACs" in out.err

    assert main(["subnet", "--arch", str(tmp_path / "missing.json"), "--checkpoint", str(ckpt), "--json"]) == 1
    out = capsys.readouterr()
    assert "missing.json" in json.loads(out.out)["error"] and "error" in out.err


def test_search_defaults_to_the_embedded_supernet_and_its_predictors(tmp_path, capsys):
    """`search` with no predictor flags ranks by the embedded supernet's accuracy predictor and
    picks that network's latency predictor, as `specialize` does."""
    import shutil

    import pytest

    from tvm_ofa.defaults import DEFAULT_CHECKPOINT, shipped
    from tvm_ofa.targets import load_target

    if not DEFAULT_CHECKPOINT.with_name("accuracy_predictor.json").is_file():
        pytest.skip("this checkout embeds no accuracy predictor")
    cpu = load_target("host-cpu").host_cpu()
    # the embedded network's shipped logs, as if they had been taken on this CPU
    shutil.copytree(shipped("tuning_logs") / "host-cpu" / "cascadelake", tmp_path / "host-cpu" / cpu)
    assert main(["search", "--latency-ms", "2", "--log-root", str(tmp_path), "--population", "8",
                 "--generations", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ranked_by"].endswith("accuracy_predictor.json")
    assert doc["winners"][0]["arch"]["resolution"] in (32, 40, 48)


def _documented_commands():
    """Every `tvm-ofa ...` line of the README's and docs' code blocks, comments and the shell's
    `&&` split off, optional `[...]` parts dropped and `<placeholders>` filled in."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for doc in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        in_code = False
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            if not in_code:
                continue
            for part in line.split("#")[0].split("&&"):
                part = part.strip()
                if not part.startswith("tvm-ofa "):
                    continue
                while re.search(r"\[[^\[\]]*\]", part):
                    part = re.sub(r"\s*\[[^\[\]]*\]", "", part)
                part = re.sub(r"<[^<>]+>", "x", part)
                yield f"{doc.name}:{n}", part


def test_every_documented_command_parses_as_written():
    """Each command the docs show is accepted by the CLI as written: flags and verbs that exist,
    values of the right type (what it then does is covered by the tests of each verb)."""
    import shlex

    from tvm_ofa.cli import build_parser

    parser = build_parser()
    commands = list(_documented_commands())
    assert len(commands) >= 30
    for where, cmd in commands:
        argv = shlex.split(cmd)[1:]
        if argv in (["--help"], ["--version"]):
            continue
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"{where}: `{cmd}` does not parse") from exc


# the documented commands that run for minutes to hours, and the test that runs each one's work
# with tiny settings (a tiny supernet, a few images, one or two trials)
LONG = {
    "train": "test_train.py::test_training_killed_with_sigkill_resumes_where_its_last_save_left_it",
    "tune": "test_compiler.py::test_tune_killed_with_sigkill_resumes_losing_at_most_the_batch_in_flight",
    "latency collect": "test_latency_predictor.py::test_collect_runs_from_python_and_resumes",
    "latency retime": "test_compiler.py::test_retime_times_every_workload_once_and_the_dataset_uses_it",
    "latency fit": "test_latency_predictor.py::test_cli_fit_predict_eval",
    "latency eval": "test_latency_predictor.py::test_cli_fit_predict_eval",
    "calibrate": "test_calibrate.py::test_calibrate_borrows_schedules_resumes_and_beats_the_source",
    "accuracy measure": "test_accuracy.py::test_measure_named_subnets_on_the_test_split",
    "accuracy fit": "test_accuracy.py::test_fit_keeps_the_better_model_and_ranks_well",
    "search": "test_cli.py::test_search_defaults_to_the_embedded_supernet_and_its_predictors",
    "specialize": "test_specialize.py::test_specialize_end_to_end_with_real_tuning",
}


def test_the_readme_workflow_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's workflow, in order, in an empty folder, then docs/' quick commands: they run
    exactly as written (placeholders filled in; `runs/fmnist-cpu/supernet.pt`, which the long `train` step
    makes, is the embedded checkpoint here, and `compile` builds from the records there are); each
    long one parses and names the test that runs its work with tiny settings."""
    import ast
    import shlex
    from pathlib import Path

    import numpy as np

    from tvm_ofa.arch import ArchConfig
    from tvm_ofa.defaults import DEFAULT_CHECKPOINT

    tests = Path(__file__).parent
    for verb, test in LONG.items():
        file, name = test.split("::")
        tree = ast.parse((tests / file).read_text())
        assert name in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}, (verb, test)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "fmnist-cpu").mkdir(parents=True)
    (tmp_path / "runs" / "fmnist-cpu" / "supernet.pt").symlink_to(DEFAULT_CHECKPOINT)
    ran = []
    for where, cmd in _documented_commands():
        argv = shlex.split(cmd)[1:]
        verb = " ".join(argv[:2]) if argv[0] in ("latency", "accuracy") else argv[0]
        if verb in LONG or (not where.startswith("README.md") and verb not in ("targets", "run", "bench")):
            continue  # docs/ also name checkout paths (targets/host-cpu.yaml): their compile is README's
        if Path("arch.json").exists():
            arch = ArchConfig.from_json(Path("arch.json").read_text())
            argv = [a.replace("artifacts/host-cpu/x", f"artifacts/host-cpu/{arch.id}") for a in argv]
            np.save("x.npy", np.zeros((1, 3, arch.resolution, arch.resolution), "float32"))
        if verb == "compile":
            argv.append("--no-tune")
        if argv == ["--help"]:
            continue  # prints and exits: test_help_lists_the_verbs_quickly
        assert main(argv) == 0, f"{where}: `{cmd}` failed: {capsys.readouterr().err[-2000:]}"
        ran.append(verb)
    assert ran[:6] == ["subnet", "subnet", "targets", "compile", "run", "bench"]
    assert ran[6:] == ["targets", "run", "bench"]  # docs/COMPILER.md's CLI block
    assert Path("model.onnx").is_file() and np.load("logits.npy").shape == (1, 10)


def test_every_flag_of_every_verb_has_help():
    import argparse

    from tvm_ofa.cli import build_parser

    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, path + [name])
            elif action.option_strings and not action.help and action.dest != "help":
                missing.append(f"{' '.join(path)} {action.option_strings[0]}")

    walk(build_parser(), ["tvm-ofa"])
    assert not missing, missing
