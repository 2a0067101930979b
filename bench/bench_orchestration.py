"""Orchestration overhead: median time from `apply` to `Ready` for a 1 MB model on one node in
`modelferry dev` mode, against a plain local copy of the same files (the work itself).

    .venv/bin/python bench/bench_orchestration.py [--runs 7]

Starts `modelferry dev --headless` on free ports with a PVC mapped to a temporary directory,
applies one fresh ClusterBaseModel per run, and polls its status every 20 ms. Goal: overhead
(median apply->Ready minus median copy) under 3 s. Not a test: prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


MIB = 1024 * 1024


def write_model(directory: Path) -> None:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "architectures": ["LlamaForCausalLM"],
                "hidden_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 4,
                "vocab_size": 256,
                "intermediate_size": 128,
                "max_position_embeddings": 512,
            }
        )
    )
    (directory / "weights.bin").write_bytes(os.urandom(MIB))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mf-bench-orch-"))
    claim = work / "claim"
    write_model(claim / "m")
    home = work / "home"
    log = open(work / "dev.log", "w")  # noqa: SIM115 - closed in the finally below
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelferry.cli",
            "dev",
            "--home",
            str(home),
            "--headless",
            "--temporal-port",
            "0",
            "--kube-port",
            "0",
            "--pvc",
            f"bench={claim}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while "modelferry dev is up" not in (work / "dev.log").read_text():
            if dev.poll() is not None or time.monotonic() > deadline:
                print((work / "dev.log").read_text())
                return 1
            time.sleep(0.1)
        api = config.new_client_from_config(config_file=str(home / "kubeconfig"))
        custom = client.CustomObjectsApi(api)
        orchestrated, copies = [], []
        for i in range(args.runs):
            name = f"bench-{i}"
            body = {
                "apiVersion": "ome.io/v1beta1",
                "kind": "ClusterBaseModel",
                "metadata": {"name": name},
                "spec": {
                    "vendor": "bench",
                    "storage": {"storageUri": "pvc://default:bench/m", "path": f"/raid/models/{name}"},
                },
            }
            start = time.perf_counter()
            custom.create_cluster_custom_object("ome.io", "v1beta1", "clusterbasemodels", body)
            while True:
                try:
                    obj = custom.get_cluster_custom_object("ome.io", "v1beta1", "clusterbasemodels", name)
                except ApiException:
                    obj = {}
                if (obj.get("status") or {}).get("state") == "Ready":
                    break
                if time.perf_counter() - start > 60:
                    print(f"{name} not Ready after 60 s: {obj.get('status')}")
                    return 1
                time.sleep(0.02)
            orchestrated.append(time.perf_counter() - start)
            target = work / f"copy-{i}"
            start = time.perf_counter()
            shutil.copytree(claim / "m", target)
            for f in target.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            copies.append(time.perf_counter() - start)
        med_o, med_c = statistics.median(orchestrated), statistics.median(copies)
        print(f"runs: {args.runs}, model: 1 MiB + config.json, one node, dev mode")
        print(
            f"{'apply -> Ready (median)':28} {med_o * 1000:8.0f} ms   (min {min(orchestrated) * 1000:.0f}, "
            f"max {max(orchestrated) * 1000:.0f})"
        )
        print(f"{'plain local copy (median)':28} {med_c * 1000:8.1f} ms")
        print(f"{'orchestration overhead':28} {(med_o - med_c) * 1000:8.0f} ms   (goal < 3000 ms)")
        return 0
    finally:
        dev.terminate()
        dev.wait(timeout=30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
