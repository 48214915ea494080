"""Serving latency, throughput and cold start: ours vs ``mlflow models serve`` vs stock BentoML.

    python -m bench.serving [--customers 5000] [--rounds 5] [--requests 300] [--seconds 2]
                            [--workers CPUS]

The same registered churn model is served three ways: ours (``closedloop serve``: ids in,
features looked up in the online store), ``mlflow models serve`` and a stock BentoML service
(both with the features supplied in the payload). Ours is measured twice: a probability only, as
the peers answer, and with three SHAP reasons, as ops ask for them. Every module is compiled to
bytecode first, as an installed environment has it. The servers run side by side, WORKERS
workers each (the machine's cores), and are measured alternately:

1. one request at a time: ROUNDS rounds of REQUESTS sequential requests each; p50 / p99 are the
   medians over rounds;
2. closed-loop load: 1, 2, 4, 8, 16 clients, each sending its next request as soon as the last
   is answered, for SECONDS each; the highest rate answered with p99 within 10 ms and no error
   is the peer's throughput, and the highest rate at any client count its peak (the clients
   share the machine's cores with the servers);
3. cold start, one worker each: process launch to the first correct answer, median of three
   launches.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from closedloop.world.simulate import simulate
from closedloop.world.store import write_world

P99_LIMIT_MS = 10.0
JSON = {"content-type": "application/json"}
CLIENTS = (1, 2, 4, 8, 16)
PROJECT = Path(__file__).resolve().parent.parent
PACKAGES = ("closedloop", "features", "training", "serving", "actions", "monitoring", "bench")
console = Console()


@dataclass
class Peer:
    """One way of serving the model: how to start it and what a request for a customer is."""

    name: str
    command: list[str]
    environment: dict[str, str]
    url: str
    request: Callable[[str], tuple[str, dict]]  # customer -> (path, json body)
    probability: Callable[[dict], float]  # answer -> the customer's probability
    cold_start: bool = True  # False: a variant of a server whose cold start is measured already
    headers: dict[str, str] = field(default_factory=dict)  # ours: a viewer's API key
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command,
            env=self.environment,
            cwd=PROJECT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


def prepare_home(home: Path, customers: int) -> tuple[Settings, datetime]:
    """A world with its online store loaded and a churn champion registered."""
    from features.ingest import ingest_world
    from features.pipeline import apply_repository, build_features, materialize
    from training import registry
    from training.config import churn_defaults
    from training.pipeline import train

    config = WorldConfig(customers=customers, days=63, seed=11)
    end = datetime.combine(config.start, datetime.min.time(), UTC) + timedelta(days=config.days)
    write_world(simulate(config), home / "world")
    ingest_world(home / "world", home, end)
    build_features(home, end)
    settings = Settings(home=home, clock_start=end, serve_workers=1)
    apply_repository(settings)
    materialize(settings, end - timedelta(days=config.days + 1), end, stock=False)
    registry.connect(settings)
    outcome = train(settings, "churn", churn_defaults())
    if not outcome.decision.promote:
        raise SystemExit(f"no churn champion: {outcome.decision.reasons}")
    return settings, end


def expected_scores(settings: Settings, customers: list[str]) -> dict[str, tuple[dict, float]]:
    """Each customer's online features and the champion's probability for them, in process."""
    from features.online import open_reader
    from serving.champion import download, registry_lookup

    champion = download(registry_lookup("churn"))
    reader = open_reader(settings.home, champion.feature_service)
    now = settings.clock_start
    expected = {}
    for customer in customers:
        features = {f: reader.read(customer, now).values[f] for f in champion.model.features}
        matrix = champion.model.records_matrix([features])
        expected[customer] = (features, float(champion.model.calibrated(matrix)[0]))
    return expected


def compile_bytecode() -> None:
    """Compile the environment's and the project's modules, as installing them does: a server
    started with PYTHONDONTWRITEBYTECODE would otherwise compile every module it imports."""
    folders = {sysconfig.get_paths()[kind] for kind in ("purelib", "platlib")}
    folders |= {PROJECT / package for package in PACKAGES}
    for folder in sorted(map(str, folders)):
        compileall.compile_dir(folder, quiet=1, workers=os.cpu_count() or 1)


def peers(
    settings: Settings, expected: dict[str, tuple[dict, float]], ports: list[int], workers: int
) -> list[Peer]:
    from serving.process import serve_command, service_environment
    from training.backends import tracking

    quiet = {"BENTOML_DO_NOT_TRACK": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # uvicorn
    mlflow_env = {
        **os.environ, **quiet, "PATH": path, "MLFLOW_TRACKING_URI": tracking(settings).uri
    }  # fmt: skip
    stock_workers = json.dumps({"services": {"stock_churn": {"workers": workers}}})
    bento_home = {
        "BENTOML_HOME": str(settings.home / "bentoml"),
        "BENTOML_CONFIG_OVERRIDES": stock_workers,
    }
    ours = settings.model_copy(update={"serve_port": ports[0], "serve_workers": workers})
    explaining = ours.model_copy(update={"serve_port": ports[3]})
    columns = list(next(iter(expected.values()))[0])
    key = viewer_key(settings)

    def ours_request(customer: str) -> tuple[str, dict]:
        return "/churn/score", {"customer_ids": [customer], "explain": 0}

    def explained_request(customer: str) -> tuple[str, dict]:
        return "/churn/score", {"customer_ids": [customer], "explain": 3}

    def mlflow_request(customer: str) -> tuple[str, dict]:
        row = [expected[customer][0][c] for c in columns]
        return "/invocations", {"dataframe_split": {"columns": columns, "data": [row]}}

    def stock_request(customer: str) -> tuple[str, dict]:
        return "/predict", {"rows": [expected[customer][0]]}

    return [
        Peer(
            "closedloop (ids, online features)",
            serve_command(ours),
            service_environment(ours),
            f"http://127.0.0.1:{ports[0]}",
            ours_request,
            lambda answer: answer["scores"][0]["probability"],
            headers=key,
        ),
        Peer(
            "mlflow models serve (features in payload)",
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                "models:/churn@champion",
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[1]),
                "--workers",
                str(workers),
            ],
            mlflow_env,
            f"http://127.0.0.1:{ports[1]}",
            mlflow_request,
            lambda answer: answer["predictions"][0],
        ),
        Peer(
            "stock BentoML (features in payload)",
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                "bench.stock_bentoml_service:StockChurn",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports[2]),
            ],
            {**mlflow_env, **bento_home},
            f"http://127.0.0.1:{ports[2]}",
            stock_request,
            lambda answer: answer[0],
        ),
        Peer(
            "closedloop with 3 SHAP reasons",
            serve_command(explaining),
            service_environment(explaining),
            f"http://127.0.0.1:{ports[3]}",
            explained_request,
            lambda answer: answer["scores"][0]["probability"],
            cold_start=False,
            headers=key,
        ),
    ]


def viewer_key(settings: Settings) -> dict[str, str]:
    """The Authorization header of a new viewer key of the home (the service requires one)."""
    from actions.backends import open_ledger
    from actions.keys import KeyStore
    from closedloop.access import Role, local_admin

    now = datetime.now(UTC)
    ledger = open_ledger(settings)
    try:
        made = KeyStore(ledger).create(
            "bench", Role.VIEWER, now + timedelta(days=1), local_admin(), now
        )
    finally:
        ledger.close()
    return {"Authorization": f"Bearer {made.token}"}


def import_into_bentoml(settings: Settings) -> None:
    """The stock peer's model store: the registered champion imported the documented way."""
    from training.backends import tracking

    code = "import bentoml; bentoml.mlflow.import_model('churn', 'models:/churn@champion')"
    subprocess.run(
        [sys.executable, "-c", code],
        env={
            **os.environ,
            "BENTOML_HOME": str(settings.home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_TRACKING_URI": tracking(settings).uri,
        },
        check=True,
        capture_output=True,
    )


def active_customers(settings: Settings, count: int) -> list[str]:
    import pandas as pd

    outcomes = pd.read_parquet(settings.world_dir / "labels/churn.parquet")
    return outcomes.query("not churned").customer_id.head(count).tolist()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def correct(peer: Peer, client: httpx.Client, customer: str, expected: float) -> bool:
    path, body = peer.request(customer)
    try:
        answer = client.post(peer.url + path, json=body, timeout=5, headers=peer.headers)
    except httpx.TransportError:
        return False
    return answer.status_code == 200 and abs(peer.probability(answer.json()) - expected) < 1e-6


def cold_start(peer: Peer, customer: str, expected: float, limit: float = 180) -> float:
    began = time.perf_counter()
    peer.start()
    with httpx.Client() as client:
        while time.perf_counter() - began < limit:
            if correct(peer, client, customer, expected):
                seconds = time.perf_counter() - began
                peer.stop()
                return seconds
            time.sleep(0.02)
    peer.stop()
    raise RuntimeError(f"{peer.name} gave no correct answer within {limit} s")


def one_at_a_time(peer: Peer, customers: list[str], requests: int) -> list[float]:
    """Latencies (ms) of sequential requests over one kept-alive connection."""
    latencies = []
    with httpx.Client(base_url=peer.url, timeout=10, headers=peer.headers) as client:
        for i in range(requests):
            path, body = peer.request(customers[i % len(customers)])
            began = time.perf_counter()
            answer = client.post(path, json=body)
            latencies.append((time.perf_counter() - began) * 1_000)
            answer.raise_for_status()
    return latencies


async def closed_loop(
    peer: Peer, customers: list[str], clients: int, seconds: float
) -> tuple[float, float, int]:
    """Answers per second, p99 latency (ms) and errors of ``clients`` clients each sending its
    next request as soon as the last is answered, for ``seconds``."""
    headers = {**JSON, **peer.headers}
    bodies = [(path, json.dumps(body)) for path, body in map(peer.request, customers)]
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(
        peer.url, connector=connector, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:

        async def client(first: int, until: float) -> None:
            nonlocal errors
            for i in itertools.count(first, clients):
                if time.perf_counter() >= until:
                    return
                path, data = bodies[i % len(bodies)]
                began = time.perf_counter()
                try:
                    async with session.post(path, data=data, headers=headers) as answer:
                        await answer.read()
                        errors += answer.status != 200
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                latencies.append((time.perf_counter() - began) * 1_000)

        began = time.perf_counter()
        await asyncio.gather(*(client(c, began + seconds) for c in range(clients)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, float(np.percentile(latencies, 99)), errors


def wait_ready(peer: Peer, customer: str, expected: float) -> None:
    with httpx.Client() as client:
        deadline = time.monotonic() + 180
        while not correct(peer, client, customer, expected):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{peer.name} never answered correctly")
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    compile_bytecode()
    with tempfile.TemporaryDirectory() as tmp:
        console.print(f"preparing a {args.customers:,}-customer world and a churn champion…")
        settings, _ = prepare_home(Path(tmp), args.customers)
        import_into_bentoml(settings)
        sample = active_customers(settings, 200)
        expected = expected_scores(settings, sample)
        first = sample[0]
        ports = [free_port() for _ in range(4)]

        colds: dict[str, list[float]] = {}
        for launch in range(3):  # ours: the first launch finds its model cache empty
            for peer in (p for p in peers(settings, expected, ports, 1) if p.cold_start):
                colds.setdefault(peer.name, []).append(cold_start(peer, first, expected[first][1]))
                console.print(
                    f"  cold start {launch + 1} {peer.name}: {colds[peer.name][-1]:.1f} s"
                )

        served = peers(settings, expected, ports, args.workers)
        for peer in served:
            peer.start()
        try:
            for peer in served:
                wait_ready(peer, first, expected[first][1])
            p50s: dict[str, list[float]] = {p.name: [] for p in served}
            p99s: dict[str, list[float]] = {p.name: [] for p in served}
            for peer in served:
                one_at_a_time(peer, sample, 50)  # warm up
            for _ in range(args.rounds):
                for peer in served:
                    latencies = one_at_a_time(peer, sample, args.requests)
                    p50s[peer.name].append(float(np.percentile(latencies, 50)))
                    p99s[peer.name].append(float(np.percentile(latencies, 99)))
            throughput = {p.name: (0.0, 0) for p in served}
            peak = {p.name: (0.0, 0, 0.0) for p in served}
            for clients in CLIENTS:
                for peer in served:
                    rate, p99, errors = asyncio.run(
                        closed_loop(peer, sample, clients, args.seconds)
                    )
                    console.print(
                        f"  {peer.name}: {clients} clients → {rate:,.0f}/s, p99 {p99:.1f} ms, "
                        f"{errors} errors"
                    )
                    if errors == 0:
                        peak[peer.name] = max(peak[peer.name], (rate, clients, p99))
                        if p99 <= P99_LIMIT_MS:
                            throughput[peer.name] = max(throughput[peer.name], (rate, clients))
        finally:
            for peer in served:
                peer.stop()

    report(served, p50s, p99s, throughput, peak, colds, args)


def report(served, p50s, p99s, throughput, peak, colds, args) -> None:
    table = Table(
        title=f"churn scoring, {args.workers} worker(s) each: {args.rounds} rounds × "
        f"{args.requests} requests one at a time; closed loop {args.seconds:g} s per client "
        "count; cold start with one worker, median of 3 launches"
    )
    limit = f"answers/s at p99 ≤ {P99_LIMIT_MS:g} ms (clients)"
    peaked = "peak answers/s (clients, p99 ms)"
    for column in ("server", "p50 ms", "p99 ms", limit, peaked, "cold start s"):
        table.add_column(column, justify="left" if column == "server" else "right")
    medians = {}
    for peer in served:
        cold = statistics.median(colds[peer.name]) if peer.name in colds else None
        p50 = statistics.median(p50s[peer.name])
        p99 = statistics.median(p99s[peer.name])
        rate, clients = throughput[peer.name]
        most, most_clients, most_p99 = peak[peer.name]
        medians[peer.name] = (p50, p99, rate, cold, most)
        shown_rate = f"{rate:,.0f} ({clients})" if rate else "none"
        shown_peak = f"{most:,.0f} ({most_clients}, {most_p99:.0f})"
        shown_cold = "(same server)" if cold is None else f"{cold:.1f}"
        table.add_row(peer.name, f"{p50:.2f}", f"{p99:.2f}", shown_rate, shown_peak, shown_cold)
    console.print(table)
    ours, mlflow_serve, stock, explained = (medians[p.name] for p in served)
    faster_peer_cold = min(mlflow_serve[3], stock[3])

    def times(a: float, b: float) -> str:
        return f"{a / b:.1f}×" if b else "n/a (none within the limit)"

    console.print(
        f"ours / mlflow serve: p99 {ours[1] / mlflow_serve[1]:.2f}× (target ≤ 0.35×), "
        f"throughput {times(ours[2], mlflow_serve[2])} (target ≥ 5×)\n"
        f"ours / stock BentoML: p99 {ours[1] / stock[1]:.2f}×, "
        f"throughput {times(ours[2], stock[2])}\n"
        f"ours with 3 reasons / mlflow serve: p99 {explained[1] / mlflow_serve[1]:.2f}×, "
        f"throughput {times(explained[2], mlflow_serve[2])}\n"
        f"ours: {ours[2]:,.0f} answers/s at p99 ≤ {P99_LIMIT_MS:g} ms (target ≥ 1,000); "
        f"peak {ours[4]:,.0f}/s = {times(ours[4], mlflow_serve[4])} mlflow serve's, "
        f"{times(ours[4], stock[4])} stock BentoML's\n"
        f"cold start: ours {ours[3]:.1f} s vs faster peer {faster_peer_cold:.1f} s "
        f"({ours[3] / faster_peer_cold:.2f}×, target ≤ 0.5×); ours at its first launch, "
        f"model cache empty: {colds[served[0].name][0]:.1f} s"
    )


if __name__ == "__main__":
    main()
