import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mpqsim.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_latency_table(capsys):
    code, out, err = run(capsys, "latency", "-m", "llama-2-7b", "-d", "a100-80gb,h100-sxm", "-b", "1,8,64",
                         "--prompt", "1024", "--context", "1024", "-p", "fp16,w4a16")
    assert code == 0
    assert out.count("a100-80gb") == 6 and "13.477" in out and "0.537" in out


def test_latency_per_op_csv(capsys, tmp_path):
    csv = tmp_path / "ops.csv"
    code, out, _ = run(capsys, "latency", "-m", "llama-2-7b", "-d", "h100-sxm", "-p", "w4a16-mx", "--per-op",
                       "--csv", str(csv))
    assert code == 0 and "model.layers.{i}.self_attn.q_proj" in out and "mxint4_32" in out
    df = pd.read_csv(csv)
    assert set(df.phase) == {"prefill", "decode"} and (df.device == "h100-sxm").all()


def test_listing_commands(capsys):
    for cmd, needle in (("devices", "mi300x"), ("models", "mixtral-8x7b"), ("presets", "mxint4")):
        code, out, _ = run(capsys, cmd)
        assert code == 0 and needle in out


def test_map_and_device_override(capsys, tmp_path):
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"name": "mine", "roles": {"linear": {"weight": "mxint4_32", "act": "mxint4_32"}}}))
    code, out, _ = run(capsys, "latency", "-m", "smollm2-135m", "-d", "custom-mx", "--map", str(m),
                       "--set", "peak_tflops.mxint4=8000")
    assert code == 0 and "mine" in out


BAD = [
    (["latency", "-m", "llama-9", "-d", "h100-sxm"], "unknown model 'llama-9'", "llama-2-7b"),
    (["latency", "-m", "llama-2-7b", "-d", "h900"], "unknown device 'h900'", "h100-sxm"),
    (["latency", "-m", "llama-2-7b", "-d", "h100-sxm", "-b", "0"], "batch size must be a positive", None),
    (["latency", "-m", "llama-2-7b", "-d", "h100-sxm", "-b", "1,x"], "comma-separated integers", None),
    (["latency", "-m", "llama-2-7b", "-d", "h100-sxm", "--context", "9000"], "exceeds llama-2-7b's maximum", None),
    (["latency", "-m", "llama-2-7b", "-d", "h100-sxm", "-p", "int3"], "unknown precision", "w4a16"),
    (["latency", "-m", "llama-3.1-405b", "-d", "a100-40gb"], "short by", None),
    (["latency", "-m", "llama-2-7b", "-d", "h100-sxm", "--set", "bandwidth"], "KEY=NUMBER", None),
    (["frobnicate"], "invalid choice", "latency"),
    (["latency", "-d", "h100-sxm"], "required", None),
]


@pytest.mark.parametrize("args,msg,choice", BAD)
def test_bad_input_one_line_exit_2(capsys, args, msg, choice):
    code, out, err = run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mpqsim: error:") and msg in lines[0], err
    if choice:
        assert choice in lines[0]
    assert "Traceback" not in err


def test_bad_files_one_line_exit_2(capsys, tmp_path):
    bad_yaml = tmp_path / "d.yaml"
    bad_yaml.write_text("name: [unclosed\n")
    bad_json = tmp_path / "m.json"
    bad_json.write_text("{oops")
    unknown_ops = tmp_path / "u.json"
    unknown_ops.write_text(json.dumps({"ops": {"model.layers.99.mlp.up_proj": {"weight": "mxint4_32"}}}))
    for args, msg in ((["-d", str(bad_yaml)], "malformed YAML"),
                      (["-d", "h100-sxm", "--map", str(bad_json)], "malformed JSON"),
                      (["-d", "h100-sxm", "--map", str(unknown_ops)], "the model lacks"),
                      (["-d", "h100-sxm", "--map", str(tmp_path / "none.json")], "not found")):
        code, _, err = run(capsys, "latency", "-m", "llama-2-7b", *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and msg in err, err


def test_console_script_exit_code():
    r = subprocess.run([sys.executable, "-m", "mpqsim.cli", "latency", "-m", "nope", "-d", "h100-sxm"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_formats_command(capsys):
    code, out, _ = run(capsys, "formats")
    assert code == 0 and "mxint4_32" in out and "4.25" in out and "format grammar" in out


def test_quantize_stats_npy_safetensors_and_dir(capsys, tmp_path):
    import numpy as np

    w = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    code, out, _ = run(capsys, "quantize-stats", str(tmp_path / "w.npy"), "-f", "mxint4_32,int8_chan")
    assert code == 0 and "(all)" in out
    st = pytest.importorskip("safetensors.numpy")
    model = tmp_path / "model"
    model.mkdir()
    st.save_file({"layers.0.q.weight": w, "layers.0.norm.weight": w[0]}, str(model / "model.safetensors"))
    csv = tmp_path / "s.csv"
    code, out, _ = run(capsys, "quantize-stats", str(model), "-f", "mxint4_32,mxint8_32", "--csv", str(csv))
    df = pd.read_csv(csv)
    assert code == 0 and list(df.tensor) == ["layers.0.q.weight", "(all)"]  # 1-D norm skipped
    assert df.mxint8_32.iloc[0] > df.mxint4_32.iloc[0] + 20


@pytest.mark.parametrize("args,msg", [
    (["quantize-stats", "/nonexistent.npy"], "not found"),
    (["quantize-stats", "README.md"], "unsupported tensor file"),
    (["quantize-stats", "{npy}", "-f", "int4-g128"], "unknown format"),
    (["quantize-stats", "{npy}", "--rounding", "up"], "unknown rounding"),
    (["quantize-stats", "{npy}", "--axis", "3"], "axis 3 does not exist"),
])
def test_quantize_stats_bad_input(capsys, tmp_path, args, msg):
    import numpy as np

    np.save(tmp_path / "w.npy", np.ones((4, 4), np.float32))
    args = [a.replace("{npy}", str(tmp_path / "w.npy")) for a in args]
    code, _, err = run(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and msg in err, err


CORE_VERB_PROBE = r"""
import sys, json, contextlib, io
for blocked in ("torch", "transformers", "gguf", "accelerate", "safetensors", "torchao"):
    sys.modules[blocked] = None  # a core install (make demo's) has none of the extras
from mpqsim.cli import main
runs = [["models"], ["devices"], ["presets"], ["formats"],
        ["latency", "-m", "llama-2-7b", "-d", "h100-sxm", "-p", "bf16,w4a16", "--per-op"],
        ["serve", "-m", "llama-2-7b", "-d", "a100-80gb", "--qps", "2", "--requests", "20"],
        ["devices", "--power"], ["devices", "--area"],
        ["collective", "-d", "h100-sxm", "-n", "8", "--bytes", "2048,1e6", "all_reduce"],
        ["latency", "-m", "llama-3.1-70b", "-d", "8xh100-sxm", "-p", "fp8"],
        ["gemm", "-d", "custom-mx", "-m", "1,64", "-n", "4096", "-k", "4096", "-w", "mxint4_32", "-a", "mxint4_32"],
        ["size", "-m", "llama-3.1-8b", "--step", "0.25", "-b", "1"]]
codes = []
with contextlib.redirect_stdout(io.StringIO()):
    for argv in runs:
        codes.append(main(argv))
print(json.dumps(dict(codes=codes, modules=sorted({m.split(".")[0] for m, v in sys.modules.items() if v is not None}))))
"""


def _declared_closure() -> set[str]:
    """Distributions of the core dependencies in pyproject.toml and everything they require (installed)."""
    import re
    import tomllib
    from importlib import metadata

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    todo = [re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0] for d in deps]
    seen: set[str] = set()
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [re.split(r"[<>=!~ ;\[(]", r, maxsplit=1)[0] for r in reqs if "extra ==" not in r]
    return seen


def _imported_by(files) -> set[str]:
    """Top-level names of every module that these source files import (anywhere in them)."""
    import ast

    names = set()
    for f in files:
        for node in ast.walk(ast.parse(Path(f).read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def test_core_verbs_need_only_declared_dependencies():
    """What `make demo` installs (no extras) runs every core verb: each third-party module that our code
    imports while they run belongs to a declared core dependency (or one of its own requirements)."""
    from importlib import metadata

    out = subprocess.run([sys.executable, "-c", CORE_VERB_PROBE], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["codes"] == [0] * len(res["codes"])
    own = {"mpqsim", "workloads", "quant", "hwmodels", "sim", "reports"}
    ours = [p for pkg in own for p in (ROOT / pkg).glob("*.py")]
    used = (_imported_by(ours) & set(res["modules"])) - own - set(sys.stdlib_module_names)
    dists = metadata.packages_distributions()
    declared = _declared_closure()
    undeclared = {m: dists.get(m) for m in used
                  if not any(d.lower().replace("_", "-") in declared for d in dists.get(m, [m]))}
    assert not undeclared, f"imported but not declared in pyproject dependencies: {undeclared}"
    assert "tqdm" in used  # the serving progress bar: once missing from the core install


def test_gemm_verb_names_its_kernel_and_speed_up(capsys, tmp_path):
    csv = tmp_path / "g.csv"
    code, out, _ = run(capsys, "gemm", "-d", "h100-sxm", "-m", "1,16,4096", "-n", "4096", "-k", "4096",
                       "-w", "int4_g128", "-a", "bf16", "--kernel", "tinygemm", "--csv", str(csv))
    assert code == 0 and "kernel tinygemm on the bf16 unit, calibrated" in out
    df = pd.read_csv(csv)
    assert list(df.m) == [1, 16, 4096] and df.speedup_vs_bf16.iloc[0] > 1.3 and df.speedup_vs_bf16.iloc[1] < 1
    code, out, _ = run(capsys, "gemm", "-d", "b200", "-m", "1", "-n", "4096", "-k", "4096")
    assert code == 0 and "UNCALIBRATED" in out


def test_latency_reports_engine_and_kernels(capsys, tmp_path):
    csv = tmp_path / "l.csv"
    code, out, err = run(capsys, "latency", "-m", "llama-2-7b", "-d", "h100-sxm,b200", "-p", "w4a16", "--engine",
                         "eager", "--kernel", "w4a16=tinygemm", "--csv", str(csv))
    assert code == 0 and "engine eager" in out and "tinygemm on b200" in err and "on h100-sxm" not in err
    df = pd.read_csv(csv)
    assert set(df.engine) == {"eager"} and set(df.gemm_kernels) == {"cublas+tinygemm"}
    assert df.set_index("device").calibrated.to_dict() == {"h100-sxm": True, "b200": False}


def test_serve_names_its_engine_and_kernels(capsys):
    code, out, _ = run(capsys, "serve", "-m", "smollm2-135m", "-d", "h100-sxm", "-p", "bf16,w4a16", "--qps", "2",
                       "--requests", "10", "--engine", "eager")
    assert code == 0 and "engine eager" in out and "w4a16: cublas+marlin (uncalibrated)" in out
    assert "bf16: cublas," in out
