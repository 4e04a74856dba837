"""infra-service: provisions servers and deploys projects with Ansible.

Consumes `provisioner:queue` (`ProvisionerMessage`) and `ansible:deploy:queue`
(`AnsibleDeployMessage`); answers with `ProvisionerResult` / `AnsibleDeployResult` on the
message's callback stream and reports progress. `main.run_actor(ctx)` runs it;
`handlers` holds the bus-free logic, `ansible` the playbook runner, `secrets` the secret
references, `servers` the deploy targets, and `playbooks/` what runs on the servers.
"""
