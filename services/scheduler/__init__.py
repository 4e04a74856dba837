"""The `scheduler` actor: background jobs, each run once per tick across replicas.

Jobs (`jobs/`): trigger provisioning of servers waiting for setup, check server health, stop
idle workers, re-drive tasks whose queue message was lost and fail tasks past their deadline,
report new dead letters, trim streams.
`run_actor(ctx)` in `main.py` runs them (the actor contract, `shared.actor`); `loop.Scheduler` and
`lock.JobLocks` are the once-per-tick machinery.
"""
