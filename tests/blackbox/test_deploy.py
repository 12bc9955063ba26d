"""deploy/: what can be checked without a Docker engine. docker-compose
accepts the compose file and it holds what a production deployment needs;
promtool accepts prometheus.yml; every metric the Grafana dashboard queries
is one natter exports; the Dockerfile builds with the packages scripts/deps
lists and runs with the libraries natter links."""

import json
import os
import re
import shutil
import subprocess

import pytest
import requests
import yaml

from conftest import NATTER_BIN, NATTER_RELEASE_BIN, REPO

DEPLOY = os.path.join(REPO, "deploy")
COMPOSE = os.path.join(DEPLOY, "docker-compose.yml")
DASHBOARD = os.path.join(DEPLOY, "grafana", "dashboards", "natter.json")
DOCKERFILE = os.path.join(DEPLOY, "Dockerfile")
# the original design's panels, in Grafana and on /dashboard
CORE_PANELS = ("Throughput: in vs out", "Consumer lag and batches in flight", "Latency breakdown (p99)")
METRIC_RE = re.compile(r"\b((?:natter|process)_[a-z0-9_]+)\b")


def tool(name, package):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian package {package}; scripts/deps installs it)")
    return path


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
    assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.fixture(scope="module")
def compose():
    """The compose file as docker-compose resolves it (anchors merged, paths absolute)."""
    dc = tool("docker-compose", "docker-compose")
    run([dc, "-f", COMPOSE, "config", "-q"])
    return yaml.safe_load(run([dc, "-f", COMPOSE, "config"]))


def natter_services(compose):
    return {n: s for n, s in compose["services"].items() if s.get("environment", {}).get("NATTER_LOG")}


def service_args(svc):
    cmd = svc.get("command") or []
    return " ".join(cmd) if isinstance(cmd, list) else cmd


def test_compose_images_are_pinned(compose):
    for name, svc in compose["services"].items():
        if "build" in svc:
            continue
        image = svc.get("image", "")
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert re.fullmatch(r"v?[0-9]+(\.[0-9]+){1,2}", tag), f"{name}: image {image!r} is not pinned to a version"


def test_compose_engines(compose):
    svcs = compose["services"]
    engines = {"redpanda": "/var/lib/redpanda/data", "scylla": "/var/lib/scylla"}
    for name, data in engines.items():
        args = service_args(svcs[name])
        assert re.search(r"--smp[= ]1\b", args) and re.search(r"--memory[= ]\S+", args), (name, args)
        mounts = [v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}" for v in svcs[name]["volumes"]]
        assert any(m.split(":")[1] == data and m.split(":")[0] in compose["volumes"] for m in mounts), (name, mounts)
        assert "healthcheck" in svcs[name], name
    assert "--overprovisioned" in service_args(svcs["redpanda"])
    assert re.search(r"--developer-mode[= ]1", service_args(svcs["scylla"]))


def test_compose_natter_nodes(compose):
    nodes = natter_services(compose)
    assert len(nodes) >= 2, "the deployment runs several natter nodes"
    help_text = subprocess.run([NATTER_BIN, "--help"], capture_output=True, text=True, timeout=10).stdout
    known = set(re.findall(r"env (NATTER_[A-Z_]+)", help_text))
    assert "NATTER_LISTEN" in known, help_text
    node_ids, init = set(), compose["services"]["redpanda-init"]
    for name, svc in nodes.items():
        env = svc["environment"]
        unknown = set(env) - known
        assert not unknown, f"{name}: natter reads no such variable: {unknown}"
        assert env["NATTER_LOG"] == "kafka" and env["NATTER_STORE"] == "cql", name
        assert env["NATTER_LISTEN"] == "0.0.0.0:8080", name
        assert env["NATTER_KAFKA_BROKERS"].split(":")[0] == "redpanda", name
        assert env["NATTER_CQL_HOSTS"].split(":")[0] == "scylla", name
        node_ids.add(env["NATTER_NODE_ID"])
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert os.path.samefile(svc["build"]["context"], REPO), name
        deps = svc["depends_on"]
        assert deps["redpanda-init"]["condition"] == "service_completed_successfully", name
        assert deps["scylla"]["condition"] == "service_healthy", name
        assert f"rpk topic create {env['NATTER_KAFKA_TOPIC']} " in service_args(init), "the topic natter uses is created"
    assert len(node_ids) == len(nodes), "every node needs its own NATTER_NODE_ID"


def test_prometheus_config(compose):
    promtool = tool("promtool", "prometheus")
    path = os.path.join(DEPLOY, "prometheus.yml")
    run([promtool, "check", "config", path])
    with open(path) as f:
        cfg = yaml.safe_load(f)
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "natter")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{n}:8080" for n in natter_services(compose)}, "Prometheus scrapes every natter node"
    mounts = compose["services"]["prometheus"]["volumes"]
    assert any(str(m).startswith(path + ":/etc/prometheus/prometheus.yml") for m in mounts), mounts


def test_grafana_provisioning(compose):
    grafana = compose["services"]["grafana"]
    mounts = dict(m.split(":")[:2] for m in grafana["volumes"] if isinstance(m, str) and m.startswith("/"))
    with open(os.path.join(DEPLOY, "grafana", "provisioning", "datasources", "prometheus.yml")) as f:
        ds = yaml.safe_load(f)["datasources"]
    with open(os.path.join(DEPLOY, "grafana", "provisioning", "dashboards", "natter.yml")) as f:
        provider = yaml.safe_load(f)["providers"][0]
    assert mounts[os.path.join(DEPLOY, "grafana", "provisioning")] == "/etc/grafana/provisioning"
    assert mounts[os.path.join(DEPLOY, "grafana", "dashboards")] == provider["options"]["path"]
    assert ds[0]["type"] == "prometheus" and ds[0]["url"] == "http://prometheus:9090"
    with open(DASHBOARD) as f:
        dash = json.load(f)
    uids = {p["datasource"]["uid"] for p in dash["panels"]} | {t["datasource"]["uid"] for p in dash["panels"]
                                                                for t in p["targets"]}
    assert uids == {ds[0]["uid"]}, uids
    titles = [p["title"] for p in dash["panels"]]
    for t in CORE_PANELS:
        assert t in titles, f"dashboard lacks the panel {t!r}: {titles}"


def exported_families(server):
    text = requests.get(server.base + "/metrics", timeout=5).text
    return {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}


def queried_metrics(exprs, families):
    """Metric names in PromQL expressions, each folded to its family:
    x_bucket, x_sum and x_count belong to the histogram x."""
    out = set()
    for e in exprs:
        names = METRIC_RE.findall(e)
        assert names, f"an expression that queries no natter metric: {e}"
        for n in names:
            base = re.sub(r"_(bucket|sum|count)$", "", n)
            out.add(base if families.get(base) == "histogram" else n)
    return out


def test_dashboard_queries_only_exported_metrics(server):
    families = exported_families(server)
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"]]
    queried = queried_metrics(exprs, families)
    missing = sorted(m for m in queried if m not in families)
    assert not missing, f"the dashboard queries metrics natter does not export: {missing}"
    assert {"natter_messages_posted_total", "natter_consumer_lag",
            "natter_end_to_end_latency_seconds"} <= queried


def test_metric_check_can_fail(server):
    """The check above means something: a misspelt or suffixed-wrong name is caught."""
    families = exported_families(server)
    bad = queried_metrics(['rate(natter_messages_postd_total[1m])',
                           'histogram_quantile(0.99, rate(natter_consumer_lag_bucket[1m]))'], families)
    assert {"natter_messages_postd_total", "natter_consumer_lag_bucket"} <= bad - set(families)


def test_web_dashboard_draws_the_same_panels_from_exported_metrics(server):
    """/dashboard (web/) shows the Grafana dashboard's core panels, computed
    from metrics natter exports."""
    families = exported_families(server)
    with open(os.path.join(REPO, "web", "dashboard.html")) as f:
        html = f.read()
    with open(os.path.join(REPO, "web", "dashboard.js")) as f:
        js = f.read()
    titles = [re.sub(r"\s+", " ", t) for t in re.findall(r"<h2>(.*?)</h2>", html, re.S)]
    assert titles == list(CORE_PANELS), titles
    strings = re.findall(r"'([^'\n]*)'", js)
    queried = queried_metrics([s for s in strings if METRIC_RE.search(s)], families)
    missing = sorted(m for m in queried if m not in families)
    assert not missing, f"web/dashboard.js reads metrics natter does not export: {missing}"
    assert {"natter_messages_posted_total", "natter_messages_consumed_total", "natter_consumer_lag",
            "natter_batches_in_flight", "natter_end_to_end_latency_seconds"} <= queried, queried


def apt_packages(stage):
    """The packages one Dockerfile stage's apt-get install names."""
    m = re.search(r"apt-get install((?:\s+(?:\\\n)?\s*[^\s&\\]+)+)", stage)
    assert m, stage
    return {w for w in m.group(1).split() if not w.startswith("-") and w != "\\"}


def dockerfile_stages():
    with open(DOCKERFILE) as f:
        text = f.read()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2, "a build stage and a runtime stage"
    for s in stages:
        assert re.match(r"debian:[0-9]+\.[0-9]+(-slim)?\s", s), f"stage not on a pinned Debian: FROM {s[:40]}"
    return stages


def test_dockerfile_builds_with_the_packages_of_scripts_deps():
    with open(os.path.join(REPO, "scripts", "deps")) as f:
        m = re.search(r"^build_debs=\(([^)]*)\)", f.read(), re.M)
    assert m, "scripts/deps has no build_debs list"
    build, runtime = dockerfile_stages()
    assert apt_packages(build) == set(m.group(1).split())
    assert re.search(r"^RUN make .*build/natter", build, re.M)
    assert re.search(r"^USER natter$", runtime, re.M), "the image runs as a non-root user"
    assert re.search(r"^EXPOSE 8080$", runtime, re.M)
    assert re.search(r"NATTER_LISTEN=0\.0\.0\.0:8080", runtime)


def test_dockerfile_runtime_has_every_library_natter_links():
    readelf = tool("readelf", "binutils")
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run([readelf, "-d", NATTER_RELEASE_BIN]))
    ldd = run(["ldd", NATTER_RELEASE_BIN])
    paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
    # the dynamic loader, which ldd names by its path alone
    paths.update((os.path.basename(p), p) for p in re.findall(r"^\s*(/\S+) \(", ldd, re.M))
    packages = set()
    for soname in needed:
        # by multiarch directory and file name: with merged /usr, dpkg may know the file under /lib
        real = os.path.realpath(paths[soname])
        owner = run(["dpkg", "-S", "*/" + os.path.basename(os.path.dirname(real)) + "/" + os.path.basename(real)])
        packages.add(owner.split(":")[0])
    packages -= {"libc6"}  # the C library is in every Debian image
    _, runtime = dockerfile_stages()
    missing = packages - apt_packages(runtime)
    assert not missing, f"the runtime stage lacks {missing} (natter links {sorted(needed)})"
