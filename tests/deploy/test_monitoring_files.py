"""The topology's monitoring, read from the checked-in files (no engine needed): the
Prometheus image is one of the service images, and the compose service scrapes exactly the
actor services, each serving its metrics where the scrape config looks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.worker_manager import images
from shared.observability.metrics import MetricsSettings
from tests.observability.receivers import PROMTOOL

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _flag(argv: list[str], name: str) -> str:
    [value] = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    return value


def test_the_prometheus_image_is_built_from_debians_package() -> None:
    """`make images` builds `codegen-orchestrator-prometheus` from deploy/prometheus/ on a
    root filesystem with Debian's prometheus; the Dockerfile runs it unprivileged and copies
    only files that exist."""
    assert images.SERVICE_PACKAGES["prometheus"] == ("prometheus",)
    dockerfile = (DEPLOY / "prometheus" / "Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines()]
    assert "ARG BASE" in lines
    assert "FROM ${BASE}" in lines
    assert "USER prometheus" in lines
    assert 'ENTRYPOINT ["/usr/bin/prometheus"]' in lines
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    [copy] = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
    assert copy, "the Dockerfile copies the configuration"
    for name in copy:
        assert (DEPLOY / "prometheus" / name).is_file(), name


def test_compose_runs_prometheus_over_the_checked_in_configuration() -> None:
    """The prometheus service: its image, the directory mounted where --config.file points,
    the rules beside it, its data on a volume, the UI only on the host's loopback."""
    compose = _compose()
    service = compose["services"]["prometheus"]
    assert service["image"].endswith("codegen-orchestrator-prometheus:latest}")
    config = Path(_flag(service["command"], "config.file"))
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    source = mounts[str(config.parent)]
    assert (DEPLOY / source / config.name).is_file()
    assert (DEPLOY / source).resolve() == DEPLOY / "prometheus"
    assert mounts[_flag(service["command"], "storage.tsdb.path")] in compose["volumes"]
    [port] = service["ports"]
    assert port.startswith("${PROMETHEUS_BIND:-127.0.0.1}:")


def test_the_scrape_config_covers_every_actor_service_where_it_serves() -> None:
    """The DNS names scraped are exactly the services running an actor; each of them serves
    on all its addresses (ORCHESTRATOR_METRICS__HOST) at the port the scrape asks."""
    services = _compose()["services"]
    actors = {
        name
        for name, service in services.items()
        if service.get("command", [])[:2] == ["orchestrator", "run"]
    }
    assert {"api", "langgraph", "worker-manager-1"} <= actors
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "compose.yml").read_text())
    [job] = [j for j in scrape["scrape_configs"] if j["job_name"] == "orchestrator"]
    [discovery] = job["dns_sd_configs"]
    assert set(discovery["names"]) == actors
    for name in actors:
        environment = services[name]["environment"]
        assert environment["ORCHESTRATOR_METRICS__HOST"] == "0.0.0.0", name
        port = int(environment.get("ORCHESTRATOR_METRICS__PORT", MetricsSettings().port))
        assert port == discovery["port"], name


@pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool is not installed")
def test_promtool_accepts_the_compose_scrape_config(tmp_path: Path) -> None:
    """`promtool check config` passes (with the rules it names); a typo in it fails."""
    config = DEPLOY / "prometheus" / "compose.yml"
    checked = subprocess.run(
        [PROMTOOL, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout + checked.stderr
    broken = tmp_path / "compose.yml"
    broken.write_text(config.read_text().replace("type: A", "type: AAA"))
    (tmp_path / "alerts.yml").write_text((DEPLOY / "prometheus" / "alerts.yml").read_text())
    failed = subprocess.run(
        [PROMTOOL, "check", "config", str(broken)], capture_output=True, text=True, check=False
    )
    assert failed.returncode != 0


def test_grafana_provisioning_points_the_dashboard_at_a_prometheus() -> None:
    """Provisioned (not imported), the dashboard resolves its data source through its own
    variable, which lists Prometheus data sources such as the one datasource.yml adds; the
    dashboard provider reads the directory the docs mount the dashboard in."""
    import json

    grafana = DEPLOY / "grafana"
    source = yaml.safe_load((grafana / "datasource.yml").read_text())
    [added] = source["datasources"]
    assert added["type"] == "prometheus"
    assert added["url"] == "${ORCHESTRATOR_PROMETHEUS_URL}"
    dashboard = json.loads((grafana / "orchestrator.json").read_text())
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert (variable["type"], variable["query"]) == ("datasource", added["type"])
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    uids |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {"${DS_PROMETHEUS}"}
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert "orchestrator_agent_tokens_total" in exprs
    assert "orchestrator_agent_cost_usd_total" in exprs
    provider = yaml.safe_load((grafana / "provisioning.yml").read_text())
    [files] = provider["providers"]
    assert files["options"]["path"] == "/etc/grafana/dashboards"
