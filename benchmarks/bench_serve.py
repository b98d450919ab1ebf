"""Load test of `ddrm serve`: requests/s and p50/p99 latency of single-user top-K requests, as JSON.

The server runs in its own process (started here on a free 127.0.0.1 port); the load comes from this process:
``--connections`` keep-alive HTTP connections, each sending requests back to back, until ``--requests`` are done or
``--duration`` seconds have passed (whichever first). Users are drawn uniformly (seeded) from the training users.
With ``--history``, every request is a new user instead: ``POST /recommendations`` with the training history of a
drawn user (fetched first, up to 500 distinct ones), which the model folds in.

    python benchmarks/bench_serve.py --checkpoint runs/ml-1m_noisy/ddrm-mf/ddrm.pt --data-root ../shared/data
    python benchmarks/bench_serve.py --checkpoint runs/tune/ml-1m_noisy/ials/best.pt --history   # fold-in
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, proc: subprocess.Popen, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            r = c.getresponse()
            if r.status == 200:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not start in time")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--model", default=None, help="ddrm or backend (default: the checkpoint's own)")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--history", action="store_true", help="fold-in requests: new users given by item histories")
    args = ap.parse_args()

    port = _free_port()
    cmd = [sys.executable, "-m", "ddrm", "serve", "--checkpoint", args.checkpoint, "--port", str(port), "--quiet",
           "--workers", str(args.workers)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        health = _wait(port, server)
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("GET", "/users?limit=10000")
        users = json.loads(c.getresponse().read())["users"]
        rng = np.random.default_rng(args.seed)
        drawn = rng.choice(users, args.requests + args.warmup)
        if args.history:  # (method, path, body): each drawn user's history posted as a new user's
            pool = list(dict.fromkeys(drawn.tolist()))[:500]
            bodies = {}
            for u in pool:
                c.request("GET", f"/users/{u}/history")
                items = [i["item_id"] for i in json.loads(c.getresponse().read())["items"]]
                bodies[u] = json.dumps({"history": items, "k": args.k, **({"model": args.model} if args.model else {})})
            paths = [("POST", "/recommendations", bodies[pool[j % len(pool)]]) for j in range(drawn.size)]
        else:
            model = f"&model={args.model}" if args.model else ""
            paths = [("GET", f"/users/{u}/recommendations?k={args.k}{model}", None) for u in drawn]
        headers = {"Content-Type": "application/json"}
        for method, p, body in paths[: args.warmup]:
            c.request(method, p, body=body, headers=headers)
            c.getresponse().read()
        todo = iter(paths[args.warmup:])
        lock = threading.Lock()
        latencies: list[float] = []
        errors = [0]
        stop_at = time.perf_counter() + args.duration

        def worker() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port)
            while time.perf_counter() < stop_at:
                with lock:
                    req = next(todo, None)
                if req is None:
                    return
                method, p, body = req
                t0 = time.perf_counter()
                conn.request(method, p, body=body, headers=headers)
                r = conn.getresponse()
                body = r.read()
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if r.status != 200 or not body:
                        errors[0] += 1

        threads = [threading.Thread(target=worker) for _ in range(args.connections)]
        t_start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_start
        lat = np.array(latencies) * 1000
        print(json.dumps({
            "benchmark": "serve", "requests_are": "new users (fold-in)" if args.history else "known users",
            "checkpoint": args.checkpoint, "model": args.model or health["model"],
            "backend": health["backend"], "dataset": health["dataset"], "n_items": health["n_items"], "k": args.k,
            "requests": int(lat.size), "errors": errors[0], "connections": args.connections,
            "workers": args.workers, "seconds": wall, "requests_per_s": lat.size / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        }, indent=1))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
