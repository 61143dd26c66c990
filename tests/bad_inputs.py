"""The table of bad inputs every verb must refuse with one line and exit code 2 (new verbs extend it).

Each case: (argv, expected exit code, a phrase the one-line message must contain). ``{tmp}`` in an
argument is replaced by a folder of prepared bad files (see ``make_files``).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

L = ["latency", "-m", "llama-2-7b", "-d", "h100-sxm"]
S = ["serve", "-m", "llama-2-7b", "-d", "a100-80gb", "--requests", "20"]
E = ["quant", "eval", "--model", "smollm2", "--preset", "mxint4"]
Q = ["quant", "search", "--model", "smollm2", "--ratio", "0.5", "-o", "{tmp}/search"]

CASES = [
    # ---- the command line itself
    ([], 2, "required"),
    (["nope"], 2, "invalid choice"),
    (["latency"], 2, "required"),
    (["latency", "-m", "llama-2-7b"], 2, "required: -d"),
    (["serve", "-d", "h100-sxm"], 2, "required: -m"),
    (["quant"], 2, "required"),
    (["quant", "nope"], 2, "invalid choice"),
    (["latency", "-m", "llama-2-7b", "-d", "h100-sxm", "--bogus"], 2, "unrecognized"),
    (["devices", "extra"], 2, "unrecognized"),
    # ---- models
    (["latency", "-m", "llama-9", "-d", "h100-sxm"], 2, "unknown model"),
    (["latency", "-m", "{tmp}/missing.json", "-d", "h100-sxm"], 2, "not found"),
    (["latency", "-m", "{tmp}/bad.json", "-d", "h100-sxm"], 2, "malformed JSON"),
    (["latency", "-m", "{tmp}/list.json", "-d", "h100-sxm"], 2, "must be a JSON object"),
    (["latency", "-m", "{tmp}/arch.json", "-d", "h100-sxm"], 2, "unsupported model_type"),
    (["latency", "-m", "{tmp}/str_hidden.json", "-d", "h100-sxm"], 2, "must be a positive integer"),
    (["latency", "-m", "{tmp}/neg_inter.json", "-d", "h100-sxm"], 2, "intermediate size must be a positive integer"),
    (["latency", "-m", "{tmp}/str_inter.json", "-d", "h100-sxm"], 2, "intermediate size must be a positive integer"),
    (["latency", "-m", "{tmp}/str_headdim.json", "-d", "h100-sxm"], 2, "head_dim must be an integer"),
    (["latency", "-m", "{tmp}/zero_layers.json", "-d", "h100-sxm"], 2, "must be a positive integer"),
    (["latency", "-m", "{tmp}/gqa.json", "-d", "h100-sxm"], 2, "not a multiple"),
    (["latency", "-m", "{tmp}/str_window.json", "-d", "h100-sxm"], 2, "sliding_window must be an integer"),
    (["latency", "-m", "{tmp}/moe.json", "-d", "h100-sxm"], 2, "num_experts_per_tok"),
    (["latency", "-m", "{tmp}/str_eps.json", "-d", "h100-sxm"], 2, "must be a number"),
    (["latency", "-m", "{tmp}/bool_vocab.json", "-d", "h100-sxm"], 2, "must be a positive integer"),
    (["latency", "-m", "{tmp}/act.json", "-d", "h100-sxm"], 2, "activation must be a name"),
    (["latency", "-m", "{tmp}/meta.json", "-d", "h100-sxm"], 2, "_mpqsim must be an object"),
    (["latency", "-m", "{tmp}/emptydir", "-d", "h100-sxm"], 2, "not found"),
    # ---- devices
    (["latency", "-m", "llama-2-7b", "-d", "h900"], 2, "unknown device"),
    (["latency", "-m", "llama-2-7b", "-d", ","], 2, "no device given"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/nodev.yaml"], 2, "cannot read device file"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/broken.yaml"], 2, "malformed YAML"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_nan.yaml"], 2, "finite number"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_neg.yaml"], 2, "must be > 0"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_nosource.yaml"], 2, "needs a 'source'"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_arch.yaml"], 2, "unknown architecture 'volta'"),
    (["gemm", "-d", "{tmp}/dev_arch.yaml", "-m", "1", "-n", "8", "-k", "8"], 2, "unknown architecture 'volta'"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_badsource.yaml"], 2, "not listed under 'sources'"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_unit.yaml"], 2, "unknown compute unit"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_accepts.yaml"], 2, "unknown unit key"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_eff.yaml"], 2, "must be <= 1"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_extra.yaml"], 2, "unknown field"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_missing.yaml"], 2, "missing field"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_list.yaml"], 2, "must be a YAML mapping"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_idle.yaml"], 2, "exceeds tdp_w"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/dev_string.yaml"], 2, "finite number"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}"], 2, "unknown device"),
    # ---- --set overrides
    (L + ["--set", "memory_bandwith_tbs=3"], 2, "not a device number"),
    (L + ["--set", "peak_tflop.bf16=1"], 2, "not a device number"),
    (L + ["--set", "peak_tflops.int3=1"], 2, "not a device number"),
    (L + ["--set", "efficiency.memroy=0.5"], 2, "not a device number"),
    (L + ["--set", "memory_bandwidth_tbs"], 2, "expects KEY=NUMBER"),
    (L + ["--set", "memory_bandwidth_tbs=fast"], 2, "is not a number"),
    (L + ["--set", "memory_bandwidth_tbs=nan"], 2, "finite number"),
    (L + ["--set", "memory_bandwidth_tbs=inf"], 2, "finite number"),
    (L + ["--set", "memory_bandwidth_tbs=-1"], 2, "must be > 0"),
    (L + ["--set", "memory_bandwidth_tbs=0"], 2, "must be > 0"),
    (L + ["--set", "efficiency.memory=1.5"], 2, "must be <= 1"),
    (L + ["--set", "efficiency.compute_by_unit.int4=0.5"], 2, "not under peak_tflops"),
    (L + ["--set", "idle_w=5000"], 2, "exceeds tdp_w"),
    (L + ["--set", "tdp_w=1", "--set", "tdp_w=2"], 2, "given twice"),
    # ---- precisions and maps
    (L + ["-p", "fp9"], 2, "unknown precision"),
    (L + ["-p", ","], 2, "give a precision"),
    (L + ["--map", "{tmp}/nomap.json"], 2, "not found"),
    (L + ["--map", "{tmp}"], 2, "is a directory"),
    (L + ["--map", "{tmp}/bad.json"], 2, "malformed JSON"),
    (L + ["--map", "{tmp}/map_list.json"], 2, "must be a JSON object"),
    (L + ["--map", "{tmp}/map_roles_list.json"], 2, "'roles' must map role names"),
    (L + ["--map", "{tmp}/map_role.json"], 2, "unknown role"),
    (L + ["--map", "{tmp}/map_key.json"], 2, "unknown key"),
    (L + ["--map", "{tmp}/map_fmt.json"], 2, "format"),
    (L + ["--map", "{tmp}/map_entry.json"], 2, "must be {\"weight\""),
    (L + ["--map", "{tmp}/map_op.json"], 2, "op(s) the model lacks"),
    (L + ["--map", "{tmp}/map_kv.json"], 2, "kv_cache"),
    (L + ["--map", "{tmp}/map_proxy.json"], 2, "'proxy' must be a fraction"),
    (L + ["--map", "{tmp}/map_ops_list.json"], 2, "'ops' must map"),
    (L + ["--map", "{tmp}/map_name.json"], 2, "'name' must be a string"),
    (L + ["--map", "{tmp}/map_entry_key.json"], 2, "must be {\"weight\""),
    # ---- latency shapes
    (L + ["-b", "0"], 2, "positive integer"),
    (L + ["-b", "-4"], 2, "positive integer"),
    (L + ["-b", "x"], 2, "comma-separated integers"),
    (L + ["-b", ""], 2, "is empty"),
    (L + ["-b", "1.5"], 2, "comma-separated integers"),
    (L + ["--prompt", "0"], 2, "must be > 0"),
    (L + ["--prompt", "-5"], 2, "must be > 0"),
    (L + ["--prompt", "x"], 2, "invalid int"),
    (L + ["--context", "5000"], 2, "maximum context"),
    (L + ["--context", "0"], 2, "must be > 0"),
    (L + ["--prompt", "5000"], 2, "maximum context"),
    (L + ["--chunk", "0"], 2, "chunk"),
    (L + ["--chunk", "-1"], 2, "chunk"),
    (["latency", "-m", "llama-3.1-405b", "-d", "a100-40gb"], 2, "short by"),
    (L + ["--csv", "{tmp}"], 2, "is a directory"),
    (L + ["--csv", "{tmp}/file.txt/out.csv"], 2, "is not a directory"),
    (L + ["--per-op", "--csv", "{tmp}"], 2, "is a directory"),
    # ---- listings
    (["devices", "--csv", "{tmp}"], 2, "is a directory"),
    (["models", "--csv", "{tmp}"], 2, "is a directory"),
    (["formats", "--csv", "{tmp}"], 2, "is a directory"),
    # ---- quantize-stats
    (["quantize-stats", "{tmp}/none.npy"], 2, "not found"),
    (["quantize-stats", "{tmp}/vec.npy"], 2, "no floating-point tensor"),
    (["quantize-stats", "{tmp}/w.npy", "-f", "mxint99_32"], 2, "out of range"),
    (["quantize-stats", "{tmp}/w.npy", "-f", "fp9_e9m9"], 2, "format"),
    (["quantize-stats", "{tmp}/w.npy", "--rounding", "up"], 2, "unknown rounding"),
    (["quantize-stats", "{tmp}/w.npy", "--axis", "5"], 2, "axis"),
    (["quantize-stats", "{tmp}/w.npy", "--csv", "{tmp}"], 2, "is a directory"),
    (["quantize-stats", "{tmp}/bad.json"], 2, ""),
    # ---- serve: rates, lengths, settings
    (S + ["--qps", "0"], 2, "must be > 0"),
    (S + ["--qps", "-1"], 2, "must be > 0"),
    (S + ["--qps", "nan"], 2, "finite"),
    (S + ["--qps", "inf"], 2, "finite"),
    (S + ["--qps", ""], 2, "is empty"),
    (S + ["--qps", "fast"], 2, "comma-separated numbers"),
    (S + ["--qps", "1,,x"], 2, "comma-separated numbers"),
    (S + ["--requests", "0"], 2, "--requests must be >= 1"),
    (S + ["--requests", "-3"], 2, "--requests must be >= 1"),
    (S + ["--requests", "100000000000"], 2, "GB is free"),
    (S + ["--prompt", "-5"], 2, "prompt (tokens) must be >= 1"),
    (S + ["--prompt", "0"], 2, "prompt (tokens) must be >= 1"),
    (S + ["--output", "0"], 2, "output (tokens) must be >= 1"),
    (S + ["--prompt", "4000", "--output", "200"], 2, "context window"),
    (S + ["--length-dist", "normal"], 2, "unknown length distribution"),
    (S + ["--length-dist", "uniform", "--prompt-spread", "600"], 2, "reach below 1 token"),
    (S + ["--length-dist", "uniform", "--prompt-spread", "-5"], 2, "spread must be >= 0"),
    (S + ["--length-dist", "lognormal", "--output-spread", "nan"], 2, "finite"),
    (S + ["--arrival", "bursty"], 2, "unknown arrival process"),
    (S + ["--arrival", "gamma", "--cv", "0"], 2, "--cv must be > 0"),
    (S + ["--arrival", "gamma", "--cv", "nan"], 2, "finite"),
    (S + ["--cv", "-1"], 2, "--cv must be > 0"),
    (S + ["--seed", "-1"], 2, "--seed must be >= 0"),
    (S + ["--scheduler", "fifo"], 2, "unknown scheduler"),
    (S + ["--router", "random"], 2, "unknown router"),
    (S + ["--max-batch", "0"], 2, "max batch must be >= 1"),
    (S + ["--max-tokens", "0"], 2, "max tokens per iteration must be >= 1"),
    (S + ["--replicas", "0"], 2, "replicas must be >= 1"),
    (S + ["--memory-margin", "-0.5"], 2, "memory margin"),
    (S + ["--memory-margin", "1"], 2, "memory margin"),
    (S + ["--memory-margin", "nan"], 2, "memory margin"),
    (S + ["--cpu-overhead-ms", "-1"], 2, "--cpu-overhead-ms must be >= 0"),
    (S + ["--cpu-overhead-ms", "nan"], 2, "finite"),
    (S + ["--slo-ttft", "0"], 2, "TTFT SLO"),
    (S + ["--slo-tpot", "-1"], 2, "TPOT SLO"),
    (S + ["--slo-ttft", "inf"], 2, "TTFT SLO"),
    (S + ["--attainment", "2"], 2, "--attainment"),
    (S + ["--attainment", "0"], 2, "--attainment"),
    (S + ["--attainment", "nan"], 2, "--attainment"),
    (S + ["--find-max-qps", "--trace", "{tmp}/trace.csv"], 2, "cannot be combined"),
    (["serve", "-m", "llama-3.1-405b", "-d", "a100-80gb", "--requests", "5"], 2, "does not fit"),
    (S + ["--max-tokens", "256"], 2, "max-tokens"),
    (S + ["--csv", "{tmp}"], 2, "is a directory"),
    (S + ["--requests-csv", "{tmp}"], 2, "is a directory"),
    (S + ["-o", "{tmp}/file.txt"], 2, "is not a directory"),
    (S + ["-p", "fp9"], 2, "unknown precision"),
    (S + ["--set", "hbm=3"], 2, "not a device number"),
    # ---- serve: traces
    (S + ["--trace", "{tmp}/nope.csv"], 2, "not found"),
    (S + ["--trace", "{tmp}"], 2, "is a directory"),
    (S + ["--trace", "{tmp}/trace_cols.csv"], 2, "lacks column"),
    (S + ["--trace", "{tmp}/trace_inf.csv"], 2, "finite arrival"),
    (S + ["--trace", "{tmp}/trace_nan.csv"], 2, "finite arrival"),
    (S + ["--trace", "{tmp}/trace_frac.csv"], 2, "whole prompt"),
    (S + ["--trace", "{tmp}/trace_neg.csv"], 2, "finite arrival"),
    (S + ["--trace", "{tmp}/trace_zero.csv"], 2, "whole prompt"),
    (S + ["--trace", "{tmp}/trace_text.csv"], 2, "must be numbers"),
    (S + ["--trace", "{tmp}/trace_empty.csv"], 2, "trace"),
    (S + ["--trace", "{tmp}/trace_header.csv"], 2, "has no rows"),
    (S + ["--trace", "{tmp}/trace_long.csv"], 2, "context window"),
    (S + ["--trace", "{tmp}/bad.jsonl"], 2, "cannot read trace"),
    # ---- demo
    (["demo", "-o", "{tmp}/file.txt"], 2, "not a directory"),
    # ---- quant (every one refused before the model loads)
    (["quant", "eval", "--model", "smollm2"], 2, "exactly one of --preset"),
    (E + ["--map", "{tmp}/map_role.json"], 2, "exactly one of --preset"),
    (["quant", "eval", "--model", "smollm2", "--preset", "fp9"], 2, "unknown precision"),
    (["quant", "eval", "--model", "smollm2", "--map", "{tmp}"], 2, "is a directory"),
    (["quant", "eval", "--model", "smollm2", "--map", "{tmp}/map_roles_list.json"], 2, "'roles' must map"),
    (E + ["--windows", "0"], 2, "--windows must be >= 1"),
    (E + ["--window-len", "1"], 2, "--window-len must be >= 2"),
    (E + ["--batch-size", "0"], 2, "--batch-size must be >= 1"),
    (E + ["--seed", "-1"], 2, "--seed must be >= 0"),
    (E + ["--text", "{tmp}/none.txt"], 2, "text file not found"),
    (E + ["--text", "{tmp}"], 2, "cannot read"),
    (E + ["--text", "{tmp}/empty.txt"], 2, "is empty"),
    (E + ["--csv", "{tmp}"], 2, "is a directory"),
    (E + ["--save-map", "{tmp}"], 2, "is a directory"),
    (E + ["--model", "{tmp}/nomodel"], 2, ""),
    (Q[:-2] + ["-o", "{tmp}/file.txt"], 2, "not a directory"),
    (Q + ["--high", "mxint4_32"], 2, "not a high-precision format"),
    (Q + ["--low", "bf16"], 2, "is a high-precision format"),
    (Q + ["--low", "mxint99_32"], 2, "out of range"),
    (Q + ["--kv", "fp9"], 2, "format"),
    (Q + ["--granularity", "block"], 2, "unknown granularity"),
    (Q + ["--searcher", "tpe"], 2, "unknown searcher"),
    (Q + ["--trials", "0"], 2, "trials must be > 0"),
    (Q[:4] + ["--ratio", "1.5", "-o", "{tmp}/s"], 2, "must be in [0, 1]"),
    (Q[:4] + ["--ratio", "nan", "-o", "{tmp}/s"], 2, "finite"),
    (Q[:4] + ["--ratio", "", "-o", "{tmp}/s"], 2, "is empty"),
    (Q + ["--windows", "0"], 2, "--windows must be >= 1"),
    (Q + ["--seed", "-2"], 2, "--seed must be >= 0"),
    (Q + ["--searcher", "greedy", "--calibration", "{tmp}/none.txt"], 2, "text file not found"),
    (Q + ["--searcher", "greedy", "--text", "northanger_abbey"], 2, "is the evaluation text"),
    # ---- engines, GEMM kernels and the gemm verb
    (L + ["--engine", "nope"], 2, "unknown engine 'nope'"),
    (S + ["--engine", "turbo"], 2, "unknown engine 'turbo'"),
    (L + ["--kernel", "tinygemm"], 2, "expected CLASS=KERNEL"),
    (L + ["--kernel", "w4a16=nope"], 2, "unknown kernel 'nope'"),
    (L + ["-p", "w4a16-mx", "--kernel", "w4a4=tinygemm"], 2, "no GEMM of the model is w4a4"),
    (S + ["--kernel", "w4a16=marlin"], 2, "no GEMM of the model is w4a16"),
    (L + ["-p", "fp8", "--kernel", "w8a8=tinygemm"], 2, "cannot run w8a8"),
    (["gemm", "-d", "h100-sxm", "-m", "1", "-n", "0", "-k", "8"], 2, "-n and -k must be > 0"),
    (["gemm", "-d", "h100-sxm", "-m", "x", "-n", "8", "-k", "8"], 2, "-m"),
    (["gemm", "-d", "h100-sxm", "-m", "1", "-n", "8", "-k", "8", "-w", "int5_zz"], 2, "int5_zz"),
    (["gemm", "-d", "h100-sxm", "-m", "1", "-n", "8", "-k", "8", "-w", "int4_g128", "--kernel", "cublas"], 2,
     "cannot run w4a16"),
    (["gemm", "-d", "nodev", "-m", "1", "-n", "8", "-k", "8"], 2, "unknown device"),
    # ---- power (issue 17)
    (L + ["--power-cap", "50"], 2, "static power"),
    (L + ["--power-cap", "400", "--set", "power_cap_w=500"], 2, "once"),
    (["gemm", "-d", "h100-sxm", "-m", "1", "-n", "8", "-k", "8", "--power-cap", "10"], 2, "static power"),
    (["devices", "--area", "--power"], 2, "one of --area or --power"),
    (["devices", "-d", "{tmp}/design_share.yaml"], 2, "must be < 1"),
    (["devices", "-d", "{tmp}/design_neg.yaml"], 2, "must be > 0"),
    (["devices", "-d", "{tmp}/design_unit.yaml"], 2, "unknown unit kind"),
    (["devices", "-d", "{tmp}/design_key.yaml"], 2, "unknown key"),
    (["latency", "-m", "llama-2-7b", "-d", "{tmp}/design_mem.yaml"], 2, "memory.type"),
    # ---- multi-device (issue 18)
    (L + ["--tp", "3"], 2, "valid --tp"),
    (L + ["--tp", "two"], 2, "--tp must be a whole number"),
    (L + ["--pp", "0"], 2, "pipeline stages"),
    (L + ["--pp", "64"], 2, "exceeds"),
    (["latency", "-m", "llama-2-7b", "-d", "8xh100-sxm", "--tp", "4"], 2, "8 devices"),
    (L + ["--ep", "--tp", "2"], 2, "mixture-of-experts"),
    (["latency", "-m", "llama-2-7b", "-d", "l40s", "--tp", "16"], 2, "no scale-out"),
    (S + ["--tp", "auto"], 2, "latency question"),
    (["serve", "-m", "llama-2-7b", "-d", "h100-sxm,a100-80gb", "--requests", "5"], 2, "one device"),
    (["collective", "-d", "h100-sxm", "-n", "8", "--bytes", "2048", "allreduce"], 2, "unknown collective"),
    (["collective", "-d", "h100-sxm", "-n", "4", "--bytes", "2048", "send_recv"], 2, "between 2 devices"),
    (["collective", "-d", "h100-sxm", "-n", "8", "--bytes", "-1", "all_reduce"], 2, ">= 0"),
    (["collective", "-d", "h100-sxm", "-n", "8", "--bytes", "x", "all_reduce"], 2, "--bytes"),
    (["collective", "-d", "h100-sxm", "-n", "8", "--bytes", "8", "--per-node", "0", "all_reduce"], 2, "--per-node"),
    (["collective", "-d", "{tmp}/ic_link.yaml", "-n", "2", "--bytes", "8", "all_reduce"], 2, "unknown link"),
    # ---- scaling laws and sweeps (issue 19)
    (["quant", "fit", "{tmp}/nofile.csv", "-o", "{tmp}/fit"], 2, "no results file"),
    (["quant", "fit", "{tmp}/trace.csv", "-o", "{tmp}/fit"], 2, "missing column"),
    (["quant", "fit", "{tmp}/trace.csv", "-o", "{tmp}/fit", "--budgets", "0"], 2, "--budgets"),
    (["quant", "sweep-blocks", "--model", "smollm2", "--types", "posit", "-o", "{tmp}/sw"], 2, "unknown data type"),
    (["quant", "sweep-blocks", "--model", "smollm2", "--types", "fp", "--bits", "5", "-o", "{tmp}/sw"], 2,
     "no fp element type"),
    (E + ["--gptq", "--calibration", "persuasion"], 2, "is the evaluation text"),
    (["quant", "landscape", "--model", "smollm2", "--format", "mxint9_32", "-o", "{tmp}/ls"], 2, "mxint9_32"),
    # ---- sweeps (issue 20)
    (["sweep", "{tmp}/nope.yaml", "-o", "{tmp}/sw"], 2, "cannot read sweep spec"),
    (["sweep", "{tmp}/sweep_key.yaml", "-o", "{tmp}/sw"], 2, "unknown key"),
    (["sweep", "{tmp}/sweep_model.yaml", "-o", "{tmp}/sw"], 2, "unknown model"),
    (["sweep", "{tmp}/sweep_layout.yaml", "-o", "{tmp}/sw"], 2, "layout tp"),
    (["sweep", "{tmp}/sweep_batch.yaml", "-o", "{tmp}/sw"], 2, "whole numbers >= 1"),
    (["sweep", "{tmp}/sweep_ok.yaml", "-o", "{tmp}/sw", "--backend", "ray9"], 2, "unknown backend"),
    (["sweep", "{tmp}/sweep_ok.yaml", "-o", "{tmp}/sw", "--workers", "0"], 2, "--workers"),
    (["sweep", "{tmp}/sweep_ok.yaml", "-o", "{tmp}/sw", "--address", "auto"], 2, "needs --backend ray"),
    (["sweep", "{tmp}/sweep_serving.yaml", "-o", "{tmp}/sw"], 2, "serving has unknown key"),
    (["sweep", "{tmp}/sweep_qps.yaml", "-o", "{tmp}/sw"], 2, "serving.qps"),
    (["sweep", "{tmp}/sweep_designs.yaml", "-o", "{tmp}/sw"], 2, "designs.vary"),
    (["sweep", "{tmp}/sweep_designkey.yaml", "-o", "{tmp}/sw"], 2, "unknown design key"),
    (["report", "{tmp}/sweep_ok.yaml", "-o", "{tmp}/rep"], 2, "reads .csv, .parquet and fits.json"),
    (["report", "{tmp}/nope.csv", "-o", "{tmp}/rep"], 2, "not found"),
    (["quant", "landscape", "--model", "smollm2", "--snrs", "x", "-o", "{tmp}/ls"], 2, "--snrs"),
    (["quant", "landscape", "--model", "smollm2", "--directions", "-1", "-o", "{tmp}/ls"], 2, "--directions"),
    # ---- hardware-aware search (issue 20)
    (Q[:4] + ["--searcher", "hw-greedy", "--cost-budget", "100", "-o", "{tmp}/s"], 2, "give --device"),
    (Q[:4] + ["--searcher", "hw-greedy", "--ratio", "0.5", "--device", "custom-mx", "-o", "{tmp}/s"], 2, "--cost-budget"),
    (Q[:4] + ["--ratio", "0.5", "--cost-budget", "100", "-o", "{tmp}/s"], 2, "is for hw-greedy"),
    (Q + ["--max-cost", "100"], 2, "give --device"),
    (Q + ["--device", "custom-mx", "--cost", "money"], 2, "--cost"),
    (Q + ["--device", "tpu9"], 2, "unknown device"),
    (Q[:4] + ["--searcher", "hw-greedy", "--cost-budget", "-1", "--device", "custom-mx", "-o", "{tmp}/s"], 2,
     "must be > 0"),
    # ---- sizing (issue 20)
    (["size", "-m", "llama-3.1-8b", "--area", "50"], 2, "does not hold the design's fixed parts"),
    (["size", "-m", "llama-3.1-8b", "--units", "bf16,tpu9"], 2, "unknown unit kind"),
    (["size", "-m", "llama-3.1-8b", "--units", "bf16"], 2, "two or more different kinds"),
    (["size", "-m", "llama-3.1-8b", "--step", "0.3"], 2, "must divide 1"),
    (["size", "-m", "llama-3.1-8b", "--objective", "speed"], 2, "--objective"),
    (["size", "-m", "llama-3.1-8b", "--qr", "1.5"], 2, "[0, 1]"),
    (["size", "-m", "llama-3.1-8b", "--qr", "0.5", "--qr-law", "published"], 2, "give one of"),
    (["size", "-m", "llama-3.1-8b", "--qr-law", "published", "--budget", "0.07"], 2, "publishes Law 1 at budgets"),
    (["size", "-m", "llama-3.1-8b", "--rule", "transfer"], 2, "--transfer-map"),
    (["size", "-m", "llama-3.1-8b", "--rule", "ranked"], 2, "--rule"),
    (["size", "-m", "llama-3.1-8b", "--attention", "fp8"], 2, "--attention"),
    (["size", "-m", "llama-3.1-8b", "--base", "h100-sxm"], 2, "not an accelerator design"),
    (["size", "-m", "llama-3.1-8b", "--power", "-5"], 2, "--power"),
    (["size", "-m", "llama-3.1-8b", "--low", "int9"], 2, "unknown format"),
    (["size", "-m", "llama-3.1-8b", "--output-tokens", "0"], 2, "--output-tokens"),
    (["quant", "eval", "--model", "smollm2", "--preset", "w4a16", "--proxy", "1.5"], 2, "--proxy"),
    (["quant", "eval", "--model", "smollm2", "--map", "{tmp}/map_proxy_ok.json", "--proxy", "0.02"], 2,
     "contradicts the map's proxy 0.05"),
    (["quant", "eval", "--model", "smollm2", "--map", "{tmp}/map_proxy_ok.json", "--gptq"], 2, "not both"),
    (["size", "-m", "llama-3.1-8b", "--vary", "sram_mb"], 2, "--vary takes KEY=V1,V2"),
    (["size", "-m", "llama-3.1-8b", "--objective", "goodput", "--requests", "5"], 2, "--requests"),
    (["size", "-m", "llama-3.1-8b", "--objective", "goodput", "--slo-ttft", "0"], 2, "--slo-ttft"),
    (["size", "-m", "llama-3.1-8b", "--vary", "bogus=1,2"], 2, "unknown design key"),
    (["size", "-m", "llama-3.1-8b", "--vary", "sram_mb=9000"], 2, "no design variant fits"),
    (L[:4] + ["custom-mx[cores=x]"], 2, "must be a number"),
    (L[:4] + ["custom-mx[cores]"], 2, "KEY=NUMBER"),
    (L[:4] + ["h100-sxm[cores=96]"], 2, "apply to accelerator designs"),
]


def _config(**kw) -> dict:
    cfg = dict(model_type="llama", hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=4, intermediate_size=512, vocab_size=1000, max_position_embeddings=512)
    return {k: v for k, v in (cfg | kw).items() if v is not None}


def make_files(tmp: Path) -> None:
    import numpy as np
    from importlib import resources

    design = ("accelerator: bad\nnode_nm: 5\nclock_mhz: 1500\ncores: 96\nunits:\n{units}\nsram_mb: 32\n"
              "memory: {{type: {mem}, stacks: 4}}\n")
    for name, units, mem in (("design_share", "  bf16: {macs_per_core: 1024}\n  mxint4: {area_share: 1.5}", "hbm3"),
                             ("design_neg", "  bf16: {macs_per_core: -8}", "hbm3"),
                             ("design_unit", "  bf17: {macs_per_core: 8}", "hbm3"),
                             ("design_key", "  bf16: {macs_per_core: 8, colour: red}", "hbm3"),
                             ("design_mem", "  bf16: {macs_per_core: 8}", "hbm9")):
        (tmp / f"{name}.yaml").write_text(design.format(units=units, mem=mem))
    ok = "models: [llama-2-7b]\ndevices: [h100-sxm]\nprecisions: [bf16]\nbatches: [1]\n"
    for name, text in (("sweep_ok", ok), ("sweep_key", ok + "colour: red\n"),
                       ("sweep_model", ok.replace("llama-2-7b", "llama-9")),
                       ("sweep_layout", ok + "layouts: [{tp: 0}]\n"), ("sweep_batch", ok.replace("[1]", "[0]")),
                       ("sweep_serving", ok + "serving: {qps: [1], reqs: 10}\n"),
                       ("sweep_qps", ok + "serving: {qps: [-1]}\n"),
                       ("sweep_designs", ok + "designs: [{base: custom-mx, vary: {sram_mb: 32}}]\n"),
                       ("sweep_designkey", ok + "designs: [{base: custom-mx, vary: {colour: [1]}}]\n")):
        (tmp / f"{name}.yaml").write_text(text)
    h100 = (resources.files("hwmodels") / "devices" / "h100-sxm.yaml").read_text()
    (tmp / "ic_link.yaml").write_text(h100.replace("link: nvlink4", "link: nvlink9"))
    (tmp / "bad.json").write_text("{not json")
    (tmp / "bad.jsonl").write_text("{not json\n")
    (tmp / "list.json").write_text("[1, 2]")
    (tmp / "file.txt").write_text("a file where a folder is expected")
    (tmp / "empty.txt").write_text("   \n")
    (tmp / "emptydir").mkdir()
    configs = dict(arch=_config(model_type="rwkv"), str_hidden=_config(hidden_size="256"),
                   neg_inter=_config(intermediate_size=-512), str_inter=_config(intermediate_size="512"),
                   str_headdim=_config(head_dim="64"), zero_layers=_config(num_hidden_layers=0),
                   gqa=_config(num_key_value_heads=3), str_window=_config(model_type="mistral", sliding_window="4096"),
                   moe=_config(model_type="mixtral", num_local_experts=4, num_experts_per_tok=8),
                   str_eps=_config(rms_norm_eps="1e-5"), bool_vocab=_config(vocab_size=True),
                   act=_config(hidden_act=["silu"]), meta=_config(_mpqsim="x"))
    for name, cfg in configs.items():
        (tmp / f"{name}.json").write_text(json.dumps(cfg))
    dev = yaml.safe_load((resources.files("hwmodels") / "devices" / "h100-sxm.yaml").read_text())

    def device(name, edit):
        d = json.loads(json.dumps(dev))
        edit(d)
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump(d))

    (tmp / "broken.yaml").write_text("name: x\npeak_tflops: [1, 2\n")
    (tmp / "dev_list.yaml").write_text("- 1\n- 2\n")
    device("dev_nan", lambda d: d["memory_bandwidth_tbs"].update(value=float("nan")))
    device("dev_neg", lambda d: d["memory_capacity_gb"].update(value=-80))
    device("dev_nosource", lambda d: d["memory_capacity_gb"].pop("source"))
    device("dev_arch", lambda d: d.update(architecture="volta"))
    device("dev_badsource", lambda d: d["memory_capacity_gb"].update(source="NOPE"))
    device("dev_unit", lambda d: d["peak_tflops"].update(bf17={"value": 1, "source": d["peak_tflops"]["bf16"]["source"]}))
    device("dev_accepts", lambda d: d["peak_tflops"]["bf16"].update(accepts=["bf16", "mxnit4_32"]))
    device("dev_eff", lambda d: d["efficiency"]["memory"].update(value=1.2))
    device("dev_extra", lambda d: d.update(hbm_stacks={"value": 5, "source": d["memory_capacity_gb"]["source"]}))
    device("dev_missing", lambda d: d.pop("tdp_w"))
    device("dev_idle", lambda d: d["idle_w"].update(value=5000))
    device("dev_string", lambda d: d["tdp_w"].update(value="700"))
    maps = dict(map_list=[1], map_roles_list={"roles": ["linear"]}, map_role={"roles": {"mlp": {"weight": "bf16"}}},
                map_key={"name": "x", "layers": {}}, map_fmt={"default": {"weight": "fp9", "act": "bf16"}},
                map_entry={"roles": {"linear": "mxint4_32"}}, map_op={"ops": {"model.layers.99.q": {"weight": "bf16"}}},
                map_kv={"kv_cache": "fp9"}, map_ops_list={"ops": ["q_proj"]}, map_name={"name": 5},
                map_entry_key={"roles": {"linear": {"weight": "bf16", "bits": 4}}}, map_proxy={"proxy": 1.5},
                map_proxy_ok={"name": "p", "roles": {"linear": {"weight": "int4_g128", "act": "bf16"}}, "proxy": 0.05})
    for name, doc in maps.items():
        (tmp / f"{name}.json").write_text(json.dumps(doc))
    np.save(tmp / "w.npy", np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32))
    np.save(tmp / "vec.npy", np.ones(8, dtype=np.float32))
    traces = dict(trace="arrival,prompt,output\n0,100,10\n0.5,120,12\n",
                  trace_cols="arrival,prompt\n0,100\n", trace_inf="arrival,prompt,output\n0,100,10\ninf,100,10\n",
                  trace_nan="arrival,prompt,output\n0,100,10\n,100,10\n", trace_frac="arrival,prompt,output\n0,100.5,10\n",
                  trace_neg="arrival,prompt,output\n-1,100,10\n", trace_zero="arrival,prompt,output\n0,0,10\n",
                  trace_text="arrival,prompt,output\n0,many,10\n", trace_empty="",
                  trace_header="arrival,prompt,output\n", trace_long="arrival,prompt,output\n0,4000,500\n")
    for name, text in traces.items():
        (tmp / f"{name}.csv").write_text(text)
