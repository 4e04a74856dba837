"""The Product-Owner worker profile: its instructions and how it reaches the API.

The PO worker gets a user-scoped API token through its environment (never argv):
`PO_API_URL` and `PO_API_TOKEN`. With it the agent creates projects and engineering / deploy
tasks through the REST API as that user; the API's outbox then writes `engineering:queue` /
`deploy:queue`. `AGENT_PROFILE=po` tells the built-in agent to speak the PO grammar.

The token never travels in the create command (a queue message): the command's context
names the variable (`api_key_env`) and the user (`owner`), and the worker-manager mints the
token when it starts the worker and revokes it when the worker ends (see
`services/worker_manager/api_keys.py`, which declares the same context names).

The variable names avoid the `WORKER_` and `ORCHESTRATOR_` prefixes on purpose: the
worker-wrapper strips those from the agent's environment.
"""

from __future__ import annotations

from shared.contracts import AgentName, CreateWorkerCommand, WorkerConfig, new_id

__all__ = [
    "API_KEY_ENV_CONTEXT",
    "CORRELATION_ID_ENV",
    "OWNER_CONTEXT",
    "PO_API_TOKEN_ENV",
    "PO_API_URL_ENV",
    "PO_CAPABILITIES",
    "PO_GRAMMAR_HELP",
    "PO_INSTRUCTIONS",
    "PO_PROFILE",
    "PROFILE_ENV",
    "ask_secret_line",
    "po_worker_command",
    "po_worker_name",
]

PROFILE_ENV = "AGENT_PROFILE"
PO_PROFILE = "po"
PO_API_URL_ENV = "PO_API_URL"
PO_API_TOKEN_ENV = "PO_API_TOKEN"  # noqa: S105  # the variable's name, not a secret
PO_CAPABILITIES = ["orchestrator-api"]
CORRELATION_ID_ENV = "PO_CORRELATION_ID"
"""Set by the worker-wrapper for an agent's run to the correlation id of the message it
answers (a chat turn's); `orchestrator task create` gives it to the task it creates."""
API_KEY_ENV_CONTEXT = "api_key_env"
"""Create-command context: the variable that gets a user-scoped API key of `owner`."""
OWNER_CONTEXT = "owner"
"""Create-command context: the API user id the worker acts for."""

PO_GRAMMAR_HELP = (
    "I understand:\n"
    "  create project <name>   start a new project (it becomes the current one)\n"
    "  create project <name> with a telegram bot   the same, with a bot module\n"
    "  create project <name> with only a telegram bot   a bot alone (no web service)\n"
    "  secrets                 the names of the current project's secrets\n"
    "  secret <NAME>           set a secret: your next message is its value\n"
    "  import <git url> [as <name>]   a project from an existing repository\n"
    "  use project <name>      switch the current project\n"
    "  develop <spec>          an engineering task on the current project\n"
    "  deploy                  deploy the current project\n"
    "  status                  the tasks of the current project\n"
    "  cancel [task]           cancel your running task (or the one with that id)\n"
    "  rollback [sha]          redeploy the previous release (or that commit)\n"
    "  deploys                 the latest deploys of the current project\n"
    "  queue                   the engineering tasks waiting to run, in order\n"
    "  help                    this list"
)
"""The fixed grammar of the built-in PO agent (no LLM)."""

PO_INSTRUCTIONS = f"""\
You are the Product Owner (PO) of a software team. You talk with one user, in their language.

Your job: understand what the user wants, turn it into projects and tasks, start them, and
tell the user what happens. You never write code yourself: developer agents do, in tasks.

You act as the user through the orchestrator, with the credential in your environment: the
API's URL in ${PO_API_URL_ENV}, a token in ${PO_API_TOKEN_ENV} (never print it, never write it to
a file, never put its value on a command line). The `orchestrator` command reads them as
ORCHESTRATOR_API__URL / ORCHESTRATOR_API__KEY; set those from the variables in the same shell
command, so only the variable names appear in it:

    export ORCHESTRATOR_API__URL="$PO_API_URL" ORCHESTRATOR_API__KEY="$PO_API_TOKEN"
    orchestrator project list --json
    orchestrator project create "<name>" --description "<what it is>" --json
    orchestrator project create "<name>" --modules backend,telegram --json   # with a bot
    orchestrator project create "<name>" --modules telegram --json   # a bot alone, no web
    orchestrator project secret list <project_id> --json   # names only
    orchestrator project import "<name>" --repo <git url> --json   # an existing repository
    orchestrator task create <project_id> --type engineering --spec "<precise spec>" --json
    orchestrator task create <project_id> --type deploy --json
    orchestrator task show <task_id> --json
    orchestrator task cancel <task_id> --json
    orchestrator project deploys <project_id> --json
    orchestrator project rollback <project_id> [--to <sha>] --json

Without the command, the same through the REST API with `Authorization: Bearer $PO_API_TOKEN`:
GET/POST $PO_API_URL/api/projects, POST $PO_API_URL/api/tasks
({{"project_id": "...", "type": "engineering" | "deploy", "spec": "..."}}),
GET $PO_API_URL/api/tasks/<task_id>.

Rules:
- Before creating a task, make sure the spec is concrete enough for a developer: ask at most
  two short questions when it is not.
- After creating a task, answer with its id and one sentence of what will happen. The user
  receives live progress of the task separately; do not poll it in a loop.
- Deploy only when the user asks for it.
- A project with a bot (module `telegram`) needs its token, BOT_TOKEN
  (`orchestrator project secret list` shows whether it is set).
  To ask the user for a secret, say what it is for ("the bot needs BOT_TOKEN, from
  @BotFather") and end your answer with this line alone:
      [[ask-secret <project_id> <NAME>]]
  The chat replaces that line with a prompt, takes the user's next message as the value,
  stores it and deletes the message; you never see it. Never ask for a value in your own
  words, never repeat, print or store one yourself; no command shows a stored value. (The
  user can also type /secret <project> <NAME>, or run `orchestrator project secret set
  <project_id> <NAME>` in a shell.)
- "cancel", "roll back" and "which deploys" requests: do it at once with the commands above
  (cancel a task, roll back to the previous release or a named commit, list the deploys)
  and answer what happened. The user can also type /cancel [task], /rollback [sha],
  /deploys, /queue, /secret and /secrets themselves: those are answered without you.
- Engineering tasks of a project run one at a time, in the order you create them, each
  starting from the previous one's work: split a larger request into ordered tasks.
- Keep answers short: this is a chat.

Without an LLM, the built-in agent plays this role with a fixed grammar.
{PO_GRAMMAR_HELP}
"""


def ask_secret_line(project: str, name: str) -> str:
    """The line a PO answer ends with to have the front door ask for a secret's value (the
    front door replaces it with its prompt: `shared.chat.secret_prompt`)."""
    return f"[[ask-secret {project} {name}]]"


def po_worker_name(user_id: int) -> str:
    """The worker name of a user's PO worker."""
    return f"po-user-{user_id}"


def po_worker_command(*, user_id: int, agent: AgentName, api_url: str) -> CreateWorkerCommand:
    """The `worker:commands` create command of a user's PO worker: its token by reference."""
    return CreateWorkerCommand(
        request_id=new_id(),
        config=WorkerConfig(
            name=po_worker_name(user_id),
            agent=agent,
            capabilities=list(PO_CAPABILITIES),
            env_vars={PROFILE_ENV: PO_PROFILE, PO_API_URL_ENV: api_url},
        ),
        context={
            "profile": PO_PROFILE,
            OWNER_CONTEXT: str(user_id),
            API_KEY_ENV_CONTEXT: PO_API_TOKEN_ENV,
            "instructions": PO_INSTRUCTIONS,
        },
    )
