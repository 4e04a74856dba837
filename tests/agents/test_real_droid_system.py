"""The developer flow with the real Droid CLI on a BYOK model the system configures:
`orchestrator up` as root maps the contract's developer agent (claude-code) to `droid`, with
`ORCHESTRATOR_WORKERS__DROID_BYOK` naming the scripted Anthropic Messages API and the key's
variable (its value in `up`'s environment only), an empty HOME. The scripted model edits the
app, then adds, commits and pushes in calls of their own (Droid-Shield's rule); the task
completes with that commit; the project deploys and its URL answers. A task cap is set, so
droid talks to the model through the wrapper's metering relay, whose count is the spend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agents.fake_models import ModelScript, Reply, serve_anthropic
from tests.agents.system import ADD_ROUTE, agent_system, deployed, developed, run_log
from tests.agents.test_droid_cli import execute
from tests.support.agents import PLANTED_KEY, cli_path
from tests.support.system import UpSystem

EDIT = ADD_ROUTE.split("\ngit add", 1)[0]
"""The route above the template's marker (the Python part of the shared script)."""


@pytest.fixture
def droid_system(tmp_path: Path, empty_home: Path) -> Iterator[tuple[UpSystem, ModelScript]]:
    """`orchestrator up` whose developer agent is the real `droid` on a scripted model."""
    droid = cli_path("droid")
    steps = (
        EDIT,
        "git add -A",
        "git commit -q -m 'Add a /hello endpoint'",
        "git push -q origin HEAD",
    )
    script = ModelScript(
        [
            *(Reply(tools=(execute(step),)) for step in steps),
            Reply(text="Added /hello and pushed the branch."),
        ]
    )
    with serve_anthropic(script) as fake:
        settings = {
            "ORCHESTRATOR_WORKERS__AGENT_CLI": json.dumps({"claude-code": "factory-droid"}),
            "ORCHESTRATOR_WORKERS__DROID_COMMAND": json.dumps([str(droid)]),
            "ORCHESTRATOR_WORKERS__DROID_BYOK": json.dumps(
                {"base_url": fake.url, "model": "scripted-model"}
            ),
            "ORCHESTRATOR_WORKERS__TASK_BUDGET_USD": "5",
        }
        secrets = {"ANTHROPIC_API_KEY": PLANTED_KEY}
        line = f"agent  claude-code → factory-droid ({droid})"
        with agent_system(tmp_path, empty_home, settings, secrets, line) as system:
            yield system, script


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_droid_develops_and_the_project_deploys(
    droid_system: tuple[UpSystem, ModelScript],
) -> None:
    """task create → the real droid's commit on the remote → task completed → deploy → URL."""
    system, script = droid_system
    project_id, task = developed(system, "Factory Droid agent")
    assert "add a /hello endpoint" in str(script.requests[0]["messages"])
    assert script.headers[0]["x-api-key"] == PLANTED_KEY
    _, spec_run = run_log(system, task.id, "factory-droid")
    # five responses of 100 input and 20 output tokens, and droid's side requests (1 + 1),
    # as the relay saw them, at the table's default $15/$75 per Mtok
    side = sum(1 for body in script.requests if not body.get("tools"))
    tokens = (500 + side, 100 + side)
    assert (spec_run["input_tokens"], spec_run["output_tokens"]) == tokens
    assert spec_run["cost_usd"] == pytest.approx((tokens[0] * 15 + tokens[1] * 75) / 1e6)
    deployed(system, project_id)
