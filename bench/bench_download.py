"""Benchmark `modelferry pull` against a local nginx origin that answers like the Hugging Face Hub.

Not a test: it builds a ~2 GB model (4 large weight files and a few small ones) in a temporary
directory, serves it with Debian's nginx (sendfile; static JSON for the Hub API paths, with
`X-Repo-Commit` added by `add_header`), and measures, on the same disk:

1. `modelferry pull` vs a ceiling measured in the same run: parallel ranged `curl` of the same
   bytes (the same number of streams), then `sync`, so both sides pay for durable writes;
2. `modelferry pull` vs `huggingface_hub.snapshot_download` (max_workers=8) on the same origin,
   and one large file alone: `hf_hub_download` vs `modelferry pull --param allowPatterns=...`;
3. the peak RSS of the pull process (`os.wait4` of the child);
4. resume: a pull SIGKILLed 3 times at random points, then run to completion; the bytes nginx sent
   (from its access log, `$body_bytes_sent`) against the model size.

Conditions are the same for every contender: the source files stay in the page cache (the
origin plays a fast network server; this machine cannot drop caches, it is not root-capable
for /proc/sys/vm), each run writes a fresh directory, and `sync` runs before every measurement
so earlier write-back does not leak into it. The order of contenders alternates between rounds;
the table shows the median. Everything is removed and nginx stopped at the end.

    .venv/bin/python bench/bench_download.py [--rounds 3] [--size-gb 2] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
REPO = "bench/model"
STREAMS_PER_FILE = 4  # the engine's default multipart_concurrency
PART = 64 * 1024 * 1024  # the engine's default part size


# --- the model and the origin -----------------------------------------------------------------


def make_model(data_dir: Path, *, size_gb: float) -> dict[str, Path]:
    large = int(size_gb * 1e9 / 4)
    files = {f"model-0000{i}-of-00004.safetensors": large for i in range(1, 5)}
    files |= {
        "config.json": 700,
        "generation_config.json": 200,
        "tokenizer.json": 9_000_000,
        "tokenizer_config.json": 50_000,
        "model.safetensors.index.json": 25_000,
    }
    paths = {}
    block = os.urandom(8 * 1024 * 1024)
    for name, size in files.items():
        path = data_dir / name
        with open(path, "wb") as f:
            left = size
            while left:
                # vary every block so no filesystem or cache can deduplicate
                chunk = hashlib.sha256(os.urandom(16)).digest() + block[32 : min(len(block), left)]
                f.write(chunk[:left])
                left -= min(len(chunk), left)
        paths[name] = path
    return paths


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def build_site(site: Path, files: dict[str, Path]) -> str:
    entries, digests = [], hashlib.sha1()
    for name, path in sorted(files.items()):
        size = path.stat().st_size
        if size > 1_000_000:
            sha = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(8 << 20):
                    sha.update(chunk)
            spec = "version https://git-lfs.github.com/spec/v1"
            pointer = f"{spec}\noid sha256:{sha.hexdigest()}\nsize {size}\n"
            entry = {
                "type": "file",
                "path": name,
                "size": size,
                "oid": git_blob_sha1(pointer.encode()),
                "lfs": {"oid": sha.hexdigest(), "size": size, "pointerSize": len(pointer)},
            }
        else:
            entry = {"type": "file", "path": name, "size": size, "oid": git_blob_sha1(path.read_bytes())}
        entries.append(entry)
        digests.update(json.dumps(entry).encode())
    commit = digests.hexdigest()
    info = {
        "id": REPO,
        "modelId": REPO,
        "sha": commit,
        "private": False,
        "gated": False,
        "siblings": [{"rfilename": n} for n in sorted(files)],
        "tags": [],
    }
    api = site / "api/models" / REPO
    for rev in ("main", commit):
        (api / "revision").mkdir(parents=True, exist_ok=True)
        (api / "revision" / rev).write_text(json.dumps(info))
        (api / "tree").mkdir(parents=True, exist_ok=True)
        (api / "tree" / rev).write_text(json.dumps(entries))
        resolve = site / REPO / "resolve" / rev
        resolve.mkdir(parents=True, exist_ok=True)
        for name, path in files.items():
            os.link(path, resolve / name)
    return commit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(work: Path, site: Path, commit: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    log = work / "access.log"
    tmp = work / "nginx-tmp"
    tmp.mkdir()
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format bytes '$request_method $uri $status $body_bytes_sent';
  access_log {log} bytes;
  sendfile on; tcp_nopush on; keepalive_requests 10000;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{
    listen 127.0.0.1:{port};
    root {site};
    location /api/ {{ default_type application/json; }}
    location ~ ^/{REPO}/resolve/ {{
      default_type application/octet-stream;
      add_header X-Repo-Commit {commit} always;
    }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, url, log
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"nginx did not start: {proc.stderr.read().decode() if proc.stderr else ''}")


def served_bytes(log: Path) -> int:
    total = 0
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and "/resolve/" in parts[1]:
            total += int(parts[3])
    return total


# --- contenders -------------------------------------------------------------------------------


def run_child(argv: list[str], *, env: dict[str, str] | None = None, kill_after: float | None = None) -> dict:
    """Run a child, wait with wait4; returns seconds, exit status and peak RSS (MiB)."""
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(proc.pid, signal.SIGKILL)  # not proc.send_signal: its poll() could reap the child first
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if kill_after is None and proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {err[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime  # includes the children the child waited for (curl)
    return {
        "seconds": elapsed,
        "rc": proc.returncode,
        "rss_mib": usage.ru_maxrss / 1024,
        "cpu": cpu,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
    }


def pull_argv(url: str, out: Path, *extra: str) -> list[str]:
    return [
        PYTHON,
        "-m",
        "modelferry.cli",
        "pull",
        f"hf://{REPO}",
        "--path",
        str(out),
        "--hf-endpoint",
        url,
        "--quiet",
        *extra,
    ]


def ceiling_script(url: str, commit: str, files: dict[str, Path], out: Path, *, hashed: bool = False) -> str:
    """A shell pipeline: the same bytes, the same number of streams, written to the same disk.

    `hashed` adds what the pull also does, SHA-256 of every byte (afterwards, from the page cache,
    `openssl dgst -sha256` per core: SHA-NI, like hashlib; coreutils' sha256sum is 4x slower here),
    as an integrity-equivalent reference.
    """
    jobs = []
    for name, path in files.items():
        size = path.stat().st_size
        if size > 200 * 1024 * 1024:
            for i, start in enumerate(range(0, size, PART)):
                end = min(size, start + PART) - 1
                jobs.append(f"-r {start}-{end} -o {out}/{name}.{i:04d} {url}/{REPO}/resolve/{commit}/{name}")
        else:
            jobs.append(f"-o {out}/{name} {url}/{REPO}/resolve/{commit}/{name}")
    listing = "\n".join(jobs)
    streams = 4 * STREAMS_PER_FILE
    script = f"mkdir -p {out} && printf '%s\\n' '{listing}' | xargs -P {streams} -L 1 curl -sf && sync"
    if hashed:
        cores = os.cpu_count() or 2
        script += f" && find {out} -type f -print0 | xargs -0 -P {cores} -n 4 openssl dgst -sha256 >/dev/null"
    return script


def snapshot_argv(
    url: str, out: Path, cache: Path, *, allow: str | None = None
) -> tuple[list[str], dict[str, str]]:
    allow_arg = f", allow_patterns=[{allow!r}]" if allow else ""
    code = (
        f"from huggingface_hub import snapshot_download; "
        f"snapshot_download({REPO!r}, local_dir={str(out)!r}, max_workers=8{allow_arg})"
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(cache),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_XET": "1",
    }
    return [PYTHON, "-c", code], env


def fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    subprocess.run(["sync"], check=True)
    return path


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="parent of the work dir (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if shutil.which("nginx") is None:
        raise SystemExit("nginx is not installed: apt-get install -y nginx-light")

    work = Path(tempfile.mkdtemp(prefix="mf-bench-", dir=args.work))
    work.chmod(0o755)  # nginx workers run as www-data
    nginx = None
    results: dict[str, list[dict]] = {k: [] for k in ("ceiling", "ceiling_sha", "pull", "snapshot")}
    try:
        data, site = work / "data", work / "site"
        data.mkdir()
        print(f"building a {args.size_gb:g} GB model in {work} ...", flush=True)
        files = make_model(data, size_gb=args.size_gb)
        total = sum(p.stat().st_size for p in files.values())
        commit = build_site(site, files)
        nginx, url, log = start_nginx(work, site, commit)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        contenders = {
            "ceiling": lambda out: run_child(["sh", "-c", ceiling_script(url, commit, files, out)]),
            "ceiling_sha": lambda out: run_child(
                ["sh", "-c", ceiling_script(url, commit, files, out, hashed=True)]
            ),
            "pull": lambda out: run_child(pull_argv(url, out), env=env),
            "snapshot": lambda out: run_child_env(snapshot_argv(url, out, work / "hf-home")),
        }
        order = list(contenders)
        for round_no in range(args.rounds):
            for name in order if round_no % 2 == 0 else list(reversed(order)):
                out = fresh(work / f"out-{name}")
                result = contenders[name](out)
                results[name].append(result)
                speed = total / result["seconds"] / 2**20
                print(
                    f"round {round_no + 1}: {name:9s} {result['seconds']:6.2f}s {speed:7.0f} MiB/s  "
                    f"rss {result['rss_mib']:.0f} MiB",
                    flush=True,
                )
                shutil.rmtree(out, ignore_errors=True)

        big = "model-00001-of-00004.safetensors"
        single_runs: dict[str, list[dict]] = {"hf_hub_download": [], "pull_one": []}
        for round_no in range(args.rounds):
            names = list(single_runs) if round_no % 2 == 0 else list(reversed(single_runs))
            for name in names:
                out = fresh(work / f"one-{name}")
                if name == "pull_one":
                    argv = pull_argv(url, out, "--param", f"allowPatterns={big}")
                    single_runs[name].append(run_child(argv, env=env))
                else:
                    single_runs[name].append(
                        run_child_env(snapshot_argv(url, out, work / "hf-home", allow=big))
                    )
                shutil.rmtree(out, ignore_errors=True)
        single = {
            name: {"seconds": statistics.median(r["seconds"] for r in runs), "runs": runs}
            for name, runs in single_runs.items()
        }

        out = fresh(work / "out-resume")
        log.write_text("")
        pull_seconds = statistics.median(r["seconds"] for r in results["pull"])
        rng = random.Random(7)
        kills = []
        for _ in range(args.kills):
            delay = rng.uniform(0.3, 0.9) * pull_seconds
            kills.append(round(delay, 2))
            run_child(pull_argv(url, out), env=env, kill_after=delay)
        final = run_child(pull_argv(url, out), env=env)
        fetched = served_bytes(log)
        verify = subprocess.run(pull_argv(url, out), env=env, capture_output=True, text=True)
        shutil.rmtree(out, ignore_errors=True)
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items() if v}
    rss = max(r["rss_mib"] for r in results["pull"])

    def rate(name: str) -> str:
        cpu = statistics.median(r["cpu"] for r in results[name])
        user = statistics.median(r["user"] for r in results[name])
        return f"{total / med[name] / 2**20:.0f} MiB/s, CPU {cpu:.1f} s (user {user:.1f} s)"

    rows = [
        ("model size", f"{total / 1e9:.2f} GB ({len(files)} files)", ""),
        ("ceiling: parallel ranged curl + sync", f"{med['ceiling']:.2f} s", rate("ceiling")),
        (
            "reference: the same curl + sync, then SHA-256",
            f"{med['ceiling_sha']:.2f} s",
            rate("ceiling_sha"),
        ),
        ("modelferry pull (hash + fsync)", f"{med['pull']:.2f} s", rate("pull")),
        ("huggingface_hub snapshot_download", f"{med['snapshot']:.2f} s", rate("snapshot")),
        ("pull / ceiling (goal >= 0.9)", f"{med['ceiling'] / med['pull']:.2f}x", ""),
        ("pull / (curl + sync + SHA-256)", f"{med['ceiling_sha'] / med['pull']:.2f}x", ""),
        ("pull vs snapshot_download (goal >= 1.3)", f"{med['snapshot'] / med['pull']:.2f}x", ""),
        ("one 500 MB file: hf_hub_download", f"{single['hf_hub_download']['seconds']:.2f} s", ""),
        ("one 500 MB file: modelferry pull", f"{single['pull_one']['seconds']:.2f} s", ""),
        ("pull peak RSS (goal < 300 MB)", f"{rss:.0f} MiB", ""),
        (
            f"resume: {args.kills} SIGKILLs at {kills} s",
            f"{fetched / total:.3f}x model size fetched",
            "goal <= 1.2",
        ),
        ("resume: final run / re-run", f"{final['seconds']:.2f} s / exit {verify.returncode}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    for label, value, extra in rows:
        print(f"{label:<{width}}  {value:<28} {extra}")
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "bench_download.json").write_text(
        json.dumps(
            {
                "total_bytes": total,
                "runs": results,
                "single": single,
                "kills": kills,
                "resume_fetched": fetched,
                "median_seconds": med,
            },
            indent=1,
        )
    )
    return 0


def run_child_env(argv_env: tuple[list[str], dict[str, str]]) -> dict:
    argv, env = argv_env
    return run_child(argv, env=env)


if __name__ == "__main__":
    sys.exit(main())
