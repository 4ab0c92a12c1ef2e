"""The redirect benchmark behind `bench/redirect` (see that script for what it measures).

Every server runs on 127.0.0.1 and is driven by the same wrk command (same threads, connections,
duration, random codes from one large set, a phone's User-Agent); every figure comes from this
run, so the ratios compare like with like on whatever else the machine is doing. The last line
printed is one JSON object with every figure and the three ratios.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from bench.outcome import finish
from bench.redirect_kill import kill_run
from bench.redirect_steps import fixed_rate, flood, fresh
from shared import db
from shared.codes import mint_code
from shared.kafka import ensure_topics
from shared.links import create_campaign, create_link, create_org
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
CODES = int(os.environ.get("BENCH_CODES", "20000"))
WORKER_CHOICES = [int(n) for n in os.environ.get("BENCH_WORKERS", "1 2 3").split()]
WRK_THREADS = 2
OWN_BROKER = "127.0.0.1:19092"
PORTS = {
    "nginx": 18080,
    "bare": 18081,
    "one": 18082,
    "best": 18083,
    "outage": 18084,
    "kill": 18085,
    "fresh": 18087,
}
SEED = int(os.environ.get("BENCH_SEED") or random.SystemRandom().randrange(2**32))
"""The seed of the run's random choices (the kill moment of (g)); in the JSON line."""
METRICS_PORT_OFFSET = 100
"""A redirector on port P serves /metrics on P + 100 (worker i of several: P + 100 + i)."""
DESTINATION = "https://shop.example.in/p/42?ref=sms"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari/604.1"

LUA = """
-- BENCH_MODE: random (a random code of the file each request), prime (the file in order from a
-- random start), walk (each thread its own slice of the file, in order: no code asked twice
-- while the requests stay under the codes), invent (random base62 codes of 10: never minted).
local mode = os.getenv("BENCH_MODE")
local codes = {}
if mode ~= "invent" then
  for line in io.lines(os.getenv("BENCH_CODES_FILE")) do codes[#codes + 1] = line end
end
local threads = tonumber(os.getenv("BENCH_THREADS"))
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
math.randomseed(os.time() + tonumber(string.sub(tostring({}), 8), 16))
local i = nil
wrk.headers["User-Agent"] = os.getenv("BENCH_UA")
request = function()
  local code
  if mode == "walk" then
    if i == nil then i = id * math.floor(#codes / threads) end
    i = i % #codes + 1
    code = codes[i]
  elseif mode == "prime" then
    if i == nil then i = math.random(#codes) end
    i = i % #codes + 1
    code = codes[i]
  elseif mode == "invent" then
    local t = {}
    for k = 1, 10 do
      local r = math.random(62)
      t[k] = string.sub(alphabet, r, r)
    end
    code = table.concat(t)
  else
    code = codes[math.random(#codes)]
  end
  return wrk.format("GET", "/" .. code)
end
if delay_ms > 0 then
  delay = function() return delay_ms end
end
"""

NGINX_CONF = """
worker_processes auto;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{ return 302 {destination}; }}
  }}
}}
"""


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class Bench:
    """Owns every process and file the run makes, and removes them at the end."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.codes_file = work / "codes.txt"
        self.lua = work / "random_codes.lua"
        self.lua.write_text(LUA)
        tag = uuid.uuid4().hex[:8]
        base = Settings.from_env()
        self.settings = base.changed(
            POSTGRES_SCHEMA=f"bench_{tag}",
            CLICKS_TOPIC=f"clicks.bench.{tag}",
            DLQ_TOPIC=f"clicks.dlq.bench.{tag}",
        )
        self.kill_topic = f"clicks.bench.{tag}.kill"
        self.seconds = SECONDS
        self.link_id = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        self.broker_env = {
            **os.environ,
            "STACK_DIR": str(work / "own-kafka"),
            "KAFKA_BOOTSTRAP_SERVERS": OWN_BROKER,
        }

    # -- setup ---------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """A schema with one link and `CODES` per-recipient codes, and the topics."""
        s = self.settings
        async with db.pool(s.postgres, max_size=2) as pool:
            async with pool.acquire() as conn:
                await db.migrate(conn, s.postgres.schema)
            org = await create_org(pool, "Bench", tracking=True)
            campaign = await create_campaign(pool, org, "Bench", "one_time")
            link = await create_link(
                pool,
                org_id=org,
                campaign_id=campaign,
                destination=DESTINATION,
                code_length=s.links.code_length,
            )
            codes = list({mint_code(s.links.code_length) for _ in range(CODES)})
            await pool.copy_records_to_table(
                "codes",
                records=[(c, link.link_id, f"r{i}") for i, c in enumerate(codes)],
                columns=["code", "link_id", "recipient_id"],
                schema_name=s.postgres.schema,
            )
        self.codes_file.write_text("\n".join(codes) + "\n")
        self.code = codes[0]
        self.link_id = link.link_id
        await ensure_topics(s.kafka)
        await ensure_topics(s.changed(CLICKS_TOPIC=self.kill_topic).kafka)
        await ensure_topics(s.changed(KAFKA_BOOTSTRAP_SERVERS=OWN_BROKER).kafka)

    async def cleanup(self) -> None:
        s = self.settings
        async with db.pool(s.postgres, max_size=1) as pool:
            await pool.execute(f'DROP SCHEMA IF EXISTS "{s.postgres.schema}" CASCADE')
        admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka.bootstrap_servers)
        await admin.start()
        try:
            await admin.delete_topics([s.kafka.clicks_topic, s.kafka.dlq_topic, self.kill_topic])
        finally:
            await admin.close()

    # -- processes -----------------------------------------------------------------------------

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        out = open(self.work / f"{name}.log", "ab")  # the child keeps its own copy
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        out.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)

    def redirector(
        self, name: str, port: int, workers: int, kafka: str, topic: str = ""
    ) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "REDIRECTOR_HOST": "127.0.0.1",
            "REDIRECTOR_PORT": str(port),
            "REDIRECTOR_WORKERS": str(workers),
            "REDIRECTOR_METRICS_PORT": str(port + METRICS_PORT_OFFSET),
            "POSTGRES_SCHEMA": self.settings.postgres.schema,
            "CLICKS_TOPIC": topic or self.settings.kafka.clicks_topic,
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "SPOOL_DIR": str(self.work / f"spool-{name}"),
            "LOG_LEVEL": "WARNING",
        }
        return self.start(name, [sys.executable, "-m", "services.redirector"], env)

    def broker(self, command: str) -> None:
        subprocess.run(
            ["bash", str(ROOT / "deploy" / "stack.sh"), command],
            env=self.broker_env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=240,
        )

    def broker_pid(self) -> int:
        return int((self.work / "own-kafka" / "kafka" / "kafka.pid").read_text().strip())

    # -- measuring -----------------------------------------------------------------------------

    def prime(self, port: int, processes: int) -> int:
        """Walk the codes in order until each process has likely seen each one (at most 60 s).

        A measured run must not pay for cold caches: a code missing from memory costs a Redis or
        Postgres round trip, and how many a timed warm-up covers would depend on the very speed
        being measured. Returns the requests made.
        """
        made = 0.0
        for _ in range(12):
            made += self.wrk(port, 5, mode="prime")["requests"]
            if made >= CODES * (processes + 1):
                break
        return made

    def wrk(
        self,
        port: int,
        seconds: int,
        *,
        mode: str = "random",
        codes: Path | None = None,
        connections: int = CONNECTIONS,
        delay_ms: int = 0,
    ) -> dict[str, float]:
        """One wrk run (see `LUA` for the modes); `delay_ms` after each answer per connection."""
        env = {
            **os.environ,
            "BENCH_CODES_FILE": str(codes or self.codes_file),
            "BENCH_MODE": mode,
            "BENCH_THREADS": str(WRK_THREADS),
            "BENCH_DELAY_MS": str(delay_ms),
            "BENCH_UA": PHONE,
        }
        done = subprocess.run(
            [
                "wrk",
                f"-t{WRK_THREADS}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                str(self.lua),
                f"http://127.0.0.1:{port}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
        return parse_wrk(done.stdout)


def parse_wrk(text: str) -> dict[str, float]:
    """requests/s, p50/p99 in ms, requests, and the failures wrk reports."""

    def ms(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not found:
            raise RuntimeError(f"no {label}th percentile in wrk output:\n{text}")
        value, unit = float(found.group(1)), found.group(2)
        return round(value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non3xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if not rps or not total:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    return {
        "rps": round(float(rps.group(1)), 1),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "requests": int(total.group(1)),
        "non_3xx": int(non3xx.group(1)) if non3xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


def status_of(port: int, path: str) -> int:
    """The status of GET `path` on 127.0.0.1:`port`, redirects not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def wait_http(port: int, path: str, want: int = 200, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if status_of(port, path) == want:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer {want} within {seconds:.0f} s")


def metric(port: int, name: str) -> float:
    """One sample of the /metrics of the redirector listening on `port`."""
    url = f"http://127.0.0.1:{port + METRICS_PORT_OFFSET}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(rf"^{re.escape(name)} ([\d.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process `pid` has used, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flat(prefix: str, figures: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in figures.items()}


def run(bench: Bench) -> dict[str, Any]:
    result: dict[str, Any] = {}
    nginx_dir = bench.work / "nginx"
    nginx_dir.mkdir()
    conf = nginx_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=nginx_dir, port=PORTS["nginx"], destination=DESTINATION))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    log("(a) nginx return 302")
    proc = bench.start("nginx", [nginx, "-c", str(conf), "-p", str(nginx_dir)])
    wait_http(PORTS["nginx"], "/x", want=302)
    bench.wrk(PORTS["nginx"], 2)
    result.update(flat("nginx", bench.wrk(PORTS["nginx"], SECONDS)))
    bench.stop(proc)

    log("(b) bare aiohttp + uvloop, dict lookup")
    argv = [sys.executable, "-m", "bench.bare_redirect", str(PORTS["bare"]), str(bench.codes_file)]
    proc = bench.start("bare", [*argv, DESTINATION])
    wait_http(PORTS["bare"], "/x", want=404)
    bench.wrk(PORTS["bare"], 2)
    result.update(flat("bare", bench.wrk(PORTS["bare"], SECONDS)))
    bench.stop(proc)

    # Not a target, a reference: the most any aiohttp redirector can do here with N processes
    # (they share the two cores with wrk), to read (d) against.
    best_bare = 0.0
    for workers in WORKER_CHOICES:
        log(f"(b') bare aiohttp, {workers} processes (SO_REUSEPORT)")
        procs = [
            bench.start(f"bare{workers}-{i}", [*argv, DESTINATION, "--reuse-port"])
            for i in range(workers)
        ]
        wait_http(PORTS["bare"], "/x", want=404)
        bench.wrk(PORTS["bare"], 2)
        rps = bench.wrk(PORTS["bare"], SECONDS)["rps"]
        result[f"bare_workers{workers}_rps"] = rps
        best_bare = max(best_bare, rps)
        for p in procs:
            bench.stop(p)

    kafka = bench.settings.kafka.bootstrap_servers
    log("(c) redirector, one process, publishing to Kafka")
    proc = bench.redirector("one", PORTS["one"], 1, kafka)
    wait_http(PORTS["one"], "/readyz")
    bench.prime(PORTS["one"], 1)
    cpu = cpu_seconds(proc.pid)
    result.update(flat("publish", bench.wrk(PORTS["one"], SECONDS)))
    result["publish_cpu_us"] = round(
        (cpu_seconds(proc.pid) - cpu) * 1e6 / max(result["publish_requests"], 1), 1
    )
    result["publish_events_sent"] = metric(PORTS["one"], "clicktrack_events_sent_total")
    result["publish_events_logged"] = metric(PORTS["one"], "clicktrack_events_logged_total")
    log("(i) the same redirector at half its maximum rate")
    result.update(fixed_rate(bench, PORTS["one"], result["publish_rps"]))
    bench.stop(proc)

    log("(f) redirector, one process, fresh codes minted in bulk just before, each asked once")
    proc = bench.redirector("fresh", PORTS["fresh"], 1, kafka)
    wait_http(PORTS["fresh"], "/readyz")
    result.update(fresh(bench, PORTS["fresh"], metric, result["publish_rps"], proc.pid))
    log("(h) a flood of random codes beside real ones")
    result.update(flood(bench, PORTS["fresh"], metric, bench.work / "fresh.txt"))
    bench.stop(proc)

    # (e) right after (c): the two p99s it compares come from neighbouring minutes.
    log("(e) redirector, one process, its broker stopped (spooling)")
    proc = bench.redirector("outage", PORTS["outage"], 1, OWN_BROKER)
    wait_http(PORTS["outage"], "/readyz")
    bench.prime(PORTS["outage"], 1)
    os.kill(bench.broker_pid(), signal.SIGKILL)
    # The switch: the batch in flight waits out its send timeout (5 s), then goes to the spool
    # with everything queued behind it. Reported apart; (e) itself is the steady state after.
    switch = bench.wrk(PORTS["outage"], 6)
    result["outage_switch_rps"], result["outage_switch_p99_ms"] = switch["rps"], switch["p99_ms"]
    wait_http(PORTS["outage"], "/readyz", want=503)
    result.update(flat("outage", bench.wrk(PORTS["outage"], SECONDS)))
    log("(e) broker back: shipping the click log")
    bench.broker("up")
    wait_http(PORTS["outage"], "/readyz", want=200, seconds=180)
    deadline = time.monotonic() + 180
    while metric(PORTS["outage"], "clicktrack_spool_bytes") and time.monotonic() < deadline:
        time.sleep(0.5)
    result["outage_unshipped_bytes"] = metric(PORTS["outage"], "clicktrack_spool_bytes")
    for name in ("logged", "dropped", "sent"):
        result[f"outage_events_{name}"] = metric(PORTS["outage"], f"clicktrack_events_{name}_total")
    bench.stop(proc)
    bench.broker("down")  # its JVM must not share the cores with (d)

    log("(g) redirector killed with SIGKILL under load, then restarted")
    result.update(kill_run(bench, PORTS["kill"], SEED))

    best: dict[str, float] = {}
    for workers in WORKER_CHOICES:
        log(f"(d) redirector, {workers} processes (SO_REUSEPORT)")
        proc = bench.redirector(f"workers{workers}", PORTS["best"], workers, kafka)
        wait_http(PORTS["best"], "/readyz")
        bench.prime(PORTS["best"], workers)
        figures = bench.wrk(PORTS["best"], SECONDS)
        result[f"workers{workers}_rps"] = figures["rps"]
        if figures["rps"] > best.get("rps", 0):
            best = {**figures, "workers": workers}
        bench.stop(proc)
    result.update(flat("best", best))

    result["ratio_publish_vs_bare"] = round(result["publish_rps"] / result["bare_rps"], 3)
    result["ratio_fresh_vs_warm"] = round(result["fresh_rps"] / result["publish_rps"], 3)
    result["ratio_fresh_p99_vs_warm_p99"] = round(
        result["fresh_p99_ms"] / result["publish_p99_ms"], 3
    )
    result["ratio_best_vs_nginx"] = round(result["best_rps"] / result["nginx_rps"], 3)
    result["ratio_bare_best_vs_nginx"] = round(best_bare / result["nginx_rps"], 3)
    result["ratio_best_vs_bare_best"] = round(result["best_rps"] / best_bare, 3)
    result["ratio_p99_outage_vs_up"] = round(result["outage_p99_ms"] / result["publish_p99_ms"], 3)
    result["targets"] = {
        "ratio_publish_vs_bare": ">= 0.85",
        "ratio_best_vs_nginx": ">= 0.5",
        "ratio_best_vs_bare_best": ">= 0.85",
        "ratio_p99_outage_vs_up": "<= 1.2",
        "ratio_fresh_vs_warm": ">= 0.7",
        "ratio_fresh_p99_vs_warm_p99": "<= 2",
        "lost_after_kill": "== 0",
        "pg_queries_per_1k_random": "<= 1",
    }
    return result


def measure() -> dict[str, Any]:
    started = time.monotonic()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="clicktrack-bench-") as tmp:
        bench = Bench(Path(tmp))
        log("starting an own Kafka broker on 127.0.0.1:19092 for the outage run")
        bench.broker("up")
        try:
            asyncio.run(bench.prepare())
            result = run(bench)
        finally:
            bench.stop_all()
            bench.broker("down")
            asyncio.run(bench.cleanup())
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m_start": round(load_start[0], 2),
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
        "seconds_each": SECONDS,
        "connections": CONNECTIONS,
        "wrk_threads": WRK_THREADS,
        "codes": CODES,
        "seed": SEED,
        **result,
        "wall_s": round(time.monotonic() - started, 1),
    }


if __name__ == "__main__":
    sys.exit(finish("redirect", measure))
