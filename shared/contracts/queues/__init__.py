"""Queue messages and results, one module per queue of the specification."""

from shared.contracts.queues.ansible_deploy import AnsibleDeployMessage, AnsibleDeployResult
from shared.contracts.queues.deploy import DeployMessage, DeployResult
from shared.contracts.queues.engineering import EngineeringMessage, EngineeringResult
from shared.contracts.queues.provisioner import ProvisionerMessage, ProvisionerResult
from shared.contracts.queues.scaffolder import ScaffolderMessage
from shared.contracts.queues.worker import (
    AgentName,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    SendMessageCommand,
    SendMessageResponse,
    WorkerCommand,
    WorkerCommandAdapter,
    WorkerCommandName,
    WorkerConfig,
    WorkerResponse,
    WorkerResponseAdapter,
    parse_worker_command,
    parse_worker_response,
)
from shared.contracts.queues.worker_io import (
    AgentRunRecord,
    AgentToolCall,
    WorkerInputMessage,
    WorkerOutputMessage,
)

__all__ = [
    "AgentName",
    "AgentRunRecord",
    "AgentToolCall",
    "AnsibleDeployMessage",
    "AnsibleDeployResult",
    "CreateWorkerCommand",
    "CreateWorkerResponse",
    "DeleteWorkerCommand",
    "DeleteWorkerResponse",
    "DeployMessage",
    "DeployResult",
    "EngineeringMessage",
    "EngineeringResult",
    "ProvisionerMessage",
    "ProvisionerResult",
    "ScaffolderMessage",
    "SendMessageCommand",
    "SendMessageResponse",
    "WorkerCommand",
    "WorkerCommandAdapter",
    "WorkerCommandName",
    "WorkerConfig",
    "WorkerInputMessage",
    "WorkerOutputMessage",
    "WorkerResponse",
    "WorkerResponseAdapter",
    "parse_worker_command",
    "parse_worker_response",
]
