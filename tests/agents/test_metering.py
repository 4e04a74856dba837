"""The usage-metering relay (`services/worker_wrapper/agents/metering.py`) on its own and
under the real Codex CLI: requests pass unchanged (key included), each response's usage is
reported as it passes, and an upstream that cannot be reached is a clear error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.worker_wrapper.agents import AgentRequest, CodexAgent
from services.worker_wrapper.agents.base import ignore_activity
from services.worker_wrapper.agents.metering import UsageRelay, usage_record
from shared.redis_server import free_port
from tests.agents.fake_models import (
    Failure,
    ModelScript,
    Reply,
    ToolCall,
    serve_anthropic,
    serve_openai,
)
from tests.agents.test_codex_cli import MODEL, codex_env
from tests.support.agents import PLANTED_KEY

EnvFactory = Callable[..., dict[str, str]]


async def test_the_relay_forwards_requests_and_reports_each_responses_usage() -> None:
    """A streamed response and an upstream error pass through with their status, headers
    and bodies; the key reaches the API; only the successful response's usage is reported,
    with the request's model and the cached input apart."""
    script = ModelScript(
        [Reply(text="hi", input_tokens=1234, output_tokens=56), Failure(status=503)]
    )
    seen: list[tuple[str | None, dict[str, Any]]] = []
    body = {"model": MODEL, "input": [], "tools": [{"type": "function", "name": "x"}]}
    headers = {"Authorization": f"Bearer {PLANTED_KEY}", "X-Extra": "kept"}
    with serve_openai(script) as fake:
        async with UsageRelay(f"{fake.url}/v1", lambda m, u: seen.append((m, u))) as relay:
            assert relay.base_url.endswith("/v1")
            assert relay.base_url.startswith("http://127.0.0.1:")
            async with httpx.AsyncClient(base_url=relay.base_url) as client:
                streamed = await client.post("/responses", json=body, headers=headers)
                failed = await client.post("/responses", json=body, headers=headers)
    assert streamed.status_code == 200
    assert streamed.headers["content-type"] == "text/event-stream"
    assert "response.completed" in streamed.text
    assert failed.status_code == 503
    assert failed.json()["error"]["message"] == "scripted failure"
    assert seen == [(MODEL, {"input_tokens": 1234, "output_tokens": 56, "cached_input_tokens": 0})]
    assert script.paths == ["/v1/responses", "/v1/responses"]
    assert script.requests == [body, body]
    assert script.headers[0]["authorization"] == f"Bearer {PLANTED_KEY}"
    assert script.headers[0]["x-extra"] == "kept"


async def test_the_relay_prices_the_anthropic_messages_stream_as_it_passes() -> None:
    """A Messages stream: the input tokens are reported at `message_start` (before the
    model writes anything), the output at `message_delta` as the increase over the start's
    count; a plain JSON answer's usage once. The sums are what the fake reported."""
    turn = Reply(text="hi", input_tokens=4000, output_tokens=56)
    script = ModelScript([turn, turn])
    seen: list[tuple[str | None, dict[str, Any]]] = []
    body: dict[str, Any] = {"model": "scripted", "messages": [], "tools": [{"name": "x"}]}
    with serve_anthropic(script) as fake:
        relay = UsageRelay(fake.url, lambda m, u: seen.append((m, u)))
        async with relay, httpx.AsyncClient(base_url=relay.base_url) as client:
            streamed = await client.post(
                "/v1/messages", json={**body, "stream": True}, headers={"x-api-key": "k"}
            )
            whole = await client.post("/v1/messages", json=body)
    assert "message_stop" in streamed.text
    assert whole.json()["content"][0]["text"] == "hi"
    start = {
        "input_tokens": 4000,
        "output_tokens": 1,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    assert seen == [
        ("scripted", {k: v for k, v in start.items() if v}),
        ("scripted", {"output_tokens": 55}),
        ("scripted", {"input_tokens": 4000, "output_tokens": 56}),
    ]
    assert script.headers[0]["x-api-key"] == "k"


def test_usage_records_of_the_three_apis() -> None:
    """Chat Completions' prompt/completion tokens (cached apart), Responses' and Messages'."""
    chat = {
        "prompt_tokens": 90,
        "completion_tokens": 9,
        "prompt_tokens_details": {"cached_tokens": 40},
    }
    assert usage_record(chat) == {"input_tokens": 90, "output_tokens": 9, "cached_input_tokens": 40}
    responses = {
        "input_tokens": 5,
        "output_tokens": 2,
        "input_tokens_details": {"cached_tokens": 1},
    }
    assert usage_record(responses) == {
        "input_tokens": 5,
        "output_tokens": 2,
        "cached_input_tokens": 1,
    }
    messages = {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 7, "server": "x"}
    assert usage_record(messages) == {
        "input_tokens": 5,
        "output_tokens": 2,
        "cache_read_input_tokens": 7,
    }


async def test_once_the_cap_is_reached_no_new_request_reaches_the_model() -> None:
    """The run's cap closes the relay (the CLI's process tree is being stopped): a response
    under way is relayed whole, with its usage; a request after it (a CLI retrying before
    the kill lands) is answered 402 by the relay and never reaches the model."""
    script = ModelScript([Reply(text="one", input_tokens=10, output_tokens=2)] * 3)
    seen: list[tuple[str | None, dict[str, Any]]] = []
    closed: list[bool] = []
    body = {"model": MODEL, "input": [], "tools": [{"type": "function", "name": "x"}]}

    def metered(model: str | None, usage: dict[str, Any]) -> None:
        seen.append((model, usage))
        closed.append(True)  # this response crossed the cap

    with serve_openai(script) as fake:
        relay = UsageRelay(f"{fake.url}/v1", metered, lambda: bool(closed))
        async with relay, httpx.AsyncClient(base_url=relay.base_url) as client:
            first = await client.post("/responses", json=body)
            retried = await client.post("/responses", json=body)
    assert first.status_code == 200
    assert "response.completed" in first.text
    assert len(seen) == 1
    assert retried.status_code == 402
    assert retried.json()["error"]["message"] == "the task's budget is spent"
    assert script.paths == ["/v1/responses"]


async def test_an_unreachable_upstream_answers_502_without_credentials() -> None:
    """Nothing listens upstream: 502 naming the host (not the URL's user and password)."""
    port = free_port()
    relay = UsageRelay(f"http://user:hunter2@127.0.0.1:{port}/v1", lambda m, u: None)
    async with relay, httpx.AsyncClient(base_url=relay.base_url) as client:
        answer = await client.post("/responses", json={"model": MODEL})
    assert answer.status_code == 502
    message = answer.json()["error"]["message"]
    assert message == f"the relay cannot reach http://127.0.0.1:{port}: ConnectError"
    assert "hunter2" not in answer.text
    with pytest.raises(ValueError, match="not http"):
        UsageRelay("unix:///tmp/socket", lambda m, u: None)


async def test_codex_under_a_cap_with_an_unreachable_api_fails_clearly(
    codex_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """Codex under a cap, its API down: the run fails at once with the model API's failure
    (the relay's 502), costs nothing, and the key is nowhere in the error."""
    agent = CodexAgent([str(codex_cli)], model=MODEL, max_retries=0, budget_usd=1.0)
    env = codex_env(make_env, f"http://127.0.0.1:{free_port()}")
    result = await agent.run(AgentRequest("r1", "go", tmp_path, 60.0, env), ignore_activity)
    assert result.status == "error"
    assert (result.error or "").startswith("the model API failed"), result.error
    assert "the relay cannot reach http://127.0.0.1" in (result.error or ""), result.error
    assert result.cost_usd == 0.0
    assert PLANTED_KEY not in (result.error or "")


async def test_codex_under_a_cap_that_is_never_reached_succeeds_through_the_relay(
    codex_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """A cap far above the spend: the run succeeds through the relay, its cost is the
    responses' usage, the same as the turn's own total."""
    script = ModelScript(
        [
            Reply(tools=(ToolCall("exec_command", {"cmd": "true"}),), input_tokens=1000),
            Reply(text="Done.", input_tokens=2000, output_tokens=10),
        ]
    )
    with serve_openai(script) as fake:
        agent = CodexAgent([str(codex_cli)], model=MODEL, max_retries=0, budget_usd=100.0)
        env = codex_env(make_env, fake.url)
        result = await agent.run(AgentRequest("r1", "go", tmp_path, 90.0, env), ignore_activity)
    assert result.status == "success", result.error
    assert result.response == "Done."
    assert result.usage["input_tokens"] == 3000
    assert result.usage["output_tokens"] == 30
    price = agent.prices.price(MODEL)
    assert result.cost_usd == pytest.approx((3000 * price.input + 30 * price.output) / 1e6)
