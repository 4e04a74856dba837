"""The built-in PO agent's grammar against the real API, as a user with a scoped token."""

from __future__ import annotations

from pathlib import Path

from services.worker_wrapper.agents import AgentRequest, AgentResult, BuiltinAgent
from services.worker_wrapper.agents.base import ignore_activity
from services.worker_wrapper.agents.builtin_po import BuiltinPoAgent
from shared.api_client import ApiClient
from shared.api_client.schemas import AgentRunCreate, ApiKeyCreate, UserCreate
from shared.chat.po_profile import PO_API_TOKEN_ENV, PO_API_URL_ENV, PO_PROFILE, PROFILE_ENV
from shared.contracts import TaskType
from tests.chat.system import ChatSystem


async def _token(po_system: ChatSystem, telegram_id: int) -> str:
    return (await _user_token(po_system, telegram_id))[1]


async def _user_token(po_system: ChatSystem, telegram_id: int) -> tuple[int, str]:
    async with po_system.api() as api:
        user = await api.create_user(UserCreate(telegram_id=telegram_id))
        created = await api.create_key(ApiKeyCreate(name="po", scope="user", user_id=user.id))
    return user.id, created.key


async def _ask(env: dict[str, str], workspace: Path, prompt: str) -> AgentResult:
    agent = BuiltinPoAgent(fallback=BuiltinAgent())
    request = AgentRequest(
        request_id=f"r-{abs(hash(prompt))}",
        prompt=prompt,
        workspace=workspace,
        timeout_s=30,
        env=env,
    )
    return await agent.run(request, ignore_activity)


async def test_the_grammar_creates_switches_develops_and_reports(
    po_system: ChatSystem, tmp_path: Path
) -> None:
    """Each phrase of the grammar does its API call as the user and says so."""
    env = {
        PROFILE_ENV: PO_PROFILE,
        PO_API_URL_ENV: po_system.settings.api.base_url,
        PO_API_TOKEN_ENV: await _token(po_system, 31),
    }
    answers = [
        (await _ask(env, tmp_path, prompt)).response or ""
        for prompt in (
            "develop too early",
            "create project one",
            "create project two",
            "use project one",
            "develop a form",
            "status",
            "use project three",
            "what can you do?",
        )
    ]
    assert "no project yet" in answers[0]
    assert "Created project two" in answers[2]
    assert "current project is now one" in answers[3]
    assert "Development of one started" in answers[4]
    assert "Project one: draft" in answers[5]
    assert "engineering: " in answers[5]
    assert "no project named 'three'" in answers[6]
    assert "without an LLM" in answers[7]
    assert "develop <spec>" in answers[7]
    assert all(answer.startswith("[built-in deterministic agent, no LLM]") for answer in answers)
    assert all(env[PO_API_TOKEN_ENV] not in answer for answer in answers)


async def test_a_name_the_api_refuses_is_answered_with_why(
    po_system: ChatSystem, tmp_path: Path
) -> None:
    """An over-long or multi-line project name gets a plain answer naming the problem; the
    conversation goes on (the next valid request works)."""
    env = {
        PROFILE_ENV: PO_PROFILE,
        PO_API_URL_ENV: po_system.settings.api.base_url,
        PO_API_TOKEN_ENV: await _token(po_system, 32),
    }
    too_long = await _ask(env, tmp_path, "create project " + "x" * 300)
    assert too_long.status == "success"
    assert "I could not do that: body.name" in (too_long.response or "")
    assert "100 characters" in (too_long.response or "")
    after = await _ask(env, tmp_path, "create project fine")
    assert "Created project fine" in (after.response or "")


async def test_without_a_credential_the_po_agent_fails_clearly(tmp_path: Path) -> None:
    """A PO worker started without its token answers an error naming the variables."""
    result = await _ask({PROFILE_ENV: PO_PROFILE}, tmp_path, "status")
    assert result.status == "error"
    assert PO_API_TOKEN_ENV in (result.error or "")


async def test_other_profiles_get_the_plain_builtin_agent(tmp_path: Path) -> None:
    """A developer worker's prompt is recorded by the wrapped built-in agent, as before."""
    result = await _ask({}, tmp_path, "add a file")
    assert result.status == "success"
    assert "recorded the prompt" in (result.response or "")


async def test_a_project_with_a_bot_and_its_secret_names(
    po_system: ChatSystem, tmp_path: Path
) -> None:
    """ "create project shop with a telegram bot" records both modules and names the token it
    needs; "secrets" lists names only, never a value."""
    token = await _token(po_system, 33)
    env = {
        PROFILE_ENV: PO_PROFILE,
        PO_API_URL_ENV: po_system.settings.api.base_url,
        PO_API_TOKEN_ENV: token,
    }
    created = (await _ask(env, tmp_path, "create project shop with a telegram bot")).response
    assert created is not None
    assert "Created project shop" in created
    assert "modules backend, telegram" in created
    assert "BOT_TOKEN" in created
    alone = (await _ask(env, tmp_path, "create project tg with only a telegram bot")).response
    assert "modules telegram)" in (alone or "")
    assert "BOT_TOKEN" in (alone or "")
    plain = (await _ask(env, tmp_path, "create project site")).response or ""
    assert "modules backend)" in plain
    assert "BOT_TOKEN" not in plain
    assert "secrets" in ((await _ask(env, tmp_path, "help")).response or "")
    async with ApiClient(po_system.settings.api.base_url, key=token) as api:
        projects = {p.name: p for p in (await api.list_projects()).items}
        assert (await api.get_project(projects["shop"].id)).modules == ["backend", "telegram"]
        assert (await api.get_project(projects["site"].id)).modules == ["backend"]
        assert (await api.get_project(projects["tg"].id)).modules == ["telegram"]
        await api.put_secret(projects["site"].id, "BOT_TOKEN", "planted-7a1f00")
    listed = (await _ask(env, tmp_path, "secrets")).response or ""
    assert "Secrets of site" in listed
    assert "BOT_TOKEN" in listed
    assert "planted-7a1f00" not in listed
    await _ask(env, tmp_path, "use project shop")
    assert "shop has no secrets" in ((await _ask(env, tmp_path, "/secrets")).response or "")


async def test_a_user_over_the_monthly_cap_is_told_the_budget_is_exceeded(
    po_system: ChatSystem, tmp_path: Path
) -> None:
    """`develop ...` for a user whose month spend reached their cap: the PO's reply says
    "budget exceeded" with the spend and the cap, and no task is created; once an admin
    raises the cap, the same phrase starts the task."""
    user_id, token = await _user_token(po_system, 33)
    env = {
        PROFILE_ENV: PO_PROFILE,
        PO_API_URL_ENV: po_system.settings.api.base_url,
        PO_API_TOKEN_ENV: token,
    }
    made = await _ask(env, tmp_path, "create project capped")
    assert "Created project capped" in (made.response or "")
    first = await _ask(env, tmp_path, "develop a first page")
    assert "Development of capped started" in (first.response or "")
    async with po_system.api() as admin:
        (task,) = (await admin.list_tasks(task_type=TaskType.ENGINEERING)).items
        await admin.record_run(
            task.id,
            AgentRunCreate(
                step="send_spec", agent="claude-code", status="success", prompt_chars=10,
                cost_usd=0.25,
            ),
        )  # fmt: skip
        await admin.set_budget(user_id, 0.2)
        refused = await _ask(env, tmp_path, "develop a second page")
        tasks = (await admin.list_tasks(task_type=TaskType.ENGINEERING)).items
        await admin.set_budget(user_id, 5.0)
        allowed = await _ask(env, tmp_path, "develop a second page")
    answer = refused.response or ""
    assert refused.status == "success"
    assert "budget exceeded" in answer
    assert "0.25" in answer
    assert "0.20" in answer
    assert "project_id" not in answer
    assert len(tasks) == 1
    assert "Development of capped started" in (allowed.response or "")
