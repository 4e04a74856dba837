"""The `langgraph` actor: the workflow orchestrator of engineering and deploy tasks.

It consumes `engineering:queue` and `deploy:queue`, drives each task through a LangGraph
`StateGraph` whose nodes only delegate (to the scaffolder, the worker-manager, infra-service,
the git provider and the API), and waits for their answers with `interrupt()`: the state
lives in a checkpointer, so a restart resumes every flow where it stopped.
"""
