"""a function: an engineering task's create in one call (PostgreSQL)

The direct create of an engineering task took four round trips on PostgreSQL (BEGIN, the
project read under its lock, the turns read with the inserts, COMMIT); the function does the
same in one statement, in the transaction of its own call (`services/api/tasks/service.py`,
`create_task_direct`). SQLite has no round trips to save and no functions: nothing there.

`create_engineering_task` locks the project's row (`FOR NO KEY UPDATE`, as
`TaskRepository.lock_project`) and returns it (found, status, owner, parallel tasks, whether
the owner has a monthly cap of their own) whatever it decides, so the API answers the
refusals as before. It writes nothing for a project that is missing, archived, that the caller
may not see (`Principal.can_see_owner`: `p_sees_everything`, else owned by `p_user_id`),
without owner or whose owner has a cap,
nor when a turn is free while tasks wait for one (the session path handles those). Else it
counts the turns (a statement after the one that took the lock: in READ COMMITTED each
statement of a volatile function sees the commits from before its start, so the creates the
lock waited for are counted), inserts the task for the project's owner, released when a turn
is free, and then its outbox row, whose payload is `p_payload_head || owner id ||
p_payload_tail` (the API renders the message with a placeholder for the owner: the bytes
are the session path's).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 03:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION create_engineering_task(
    p_project_id text,
    p_sees_everything boolean,
    p_user_id integer,
    p_task_id text,
    p_spec text,
    p_correlation_id text,
    p_created_at timestamptz,
    p_deadline_at timestamptz,
    p_stream text,
    p_message_type text,
    p_payload_head text,
    p_payload_tail text,
    p_outbox_created_at timestamptz,
    p_traceparent text
)
RETURNS TABLE (
    project_found boolean,
    project_status text,
    project_owner_id integer,
    project_parallel_tasks integer,
    owner_capped boolean,
    released_open bigint,
    waiting boolean,
    task_created boolean,
    task_released boolean
)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    task_created := false;
    task_released := false;
    SELECT p.status, p.owner_id, p.parallel_tasks, u.monthly_budget_usd IS NOT NULL
      INTO project_status, project_owner_id, project_parallel_tasks, owner_capped
      FROM projects AS p LEFT OUTER JOIN users AS u ON u.id = p.owner_id
     WHERE p.id = p_project_id
       FOR NO KEY UPDATE OF p;
    project_found := FOUND;
    IF NOT project_found
       OR project_status = 'archived'
       OR project_owner_id IS NULL
       OR owner_capped
       OR NOT (p_sees_everything OR coalesce(project_owner_id = p_user_id, false)) THEN
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT (SELECT count(*) FROM tasks AS t
             WHERE t.status IN ('queued', 'running')
               AND t.project_id = p_project_id
               AND t.type = 'engineering'
               AND t.released_at IS NOT NULL),
           EXISTS (SELECT 1 FROM tasks AS t
                    WHERE t.status = 'queued'
                      AND t.project_id = p_project_id
                      AND t.type = 'engineering'
                      AND t.released_at IS NULL
                      AND t.user_id IS NOT NULL)
      INTO released_open, waiting;
    task_released := released_open < greatest(1, project_parallel_tasks);
    IF task_released AND waiting THEN
        task_released := false;
        RETURN NEXT;
        RETURN;
    END IF;
    INSERT INTO tasks (
        id, project_id, user_id, type, status, spec, correlation_id,
        created_at, deadline_at, redrive_count, released_at
    ) VALUES (
        p_task_id, p_project_id, project_owner_id, 'engineering', 'queued', p_spec,
        p_correlation_id, p_created_at, p_deadline_at, 0,
        CASE WHEN task_released THEN p_created_at END
    );
    task_created := true;
    IF task_released THEN
        INSERT INTO outbox (
            stream, message_type, payload, correlation_id, created_at, attempts, traceparent
        ) VALUES (
            p_stream, p_message_type, p_payload_head || project_owner_id || p_payload_tail,
            p_correlation_id, p_outbox_created_at, 0, p_traceparent
        );
    END IF;
    RETURN NEXT;
END
$fn$
"""


def upgrade() -> None:
    """Apply this revision (PostgreSQL only)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    """Revert this revision (PostgreSQL only)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS create_engineering_task(text, boolean, integer, text, "
            "text, text, timestamptz, timestamptz, text, text, text, text, timestamptz, text)"
        )
