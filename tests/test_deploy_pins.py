"""`shared.deploys`: the pinned repository name and the deploy spec that carry a commit
within the binding contracts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contracts import AnsibleDeployMessage
from shared.deploys import commit_of_spec, deploy_spec, pin_repo, split_pinned

SHA = "0123456789abcdef0123456789abcdef01234567"
NAMES = st.from_regex(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,20}/[A-Za-z0-9][A-Za-z0-9._-]{0,20}$")
SHAS = st.from_regex(r"^[0-9a-f]{40}$", fullmatch=True)


@given(NAMES, SHAS)
def test_a_pinned_name_splits_back_into_name_and_sha(name: str, sha: str) -> None:
    """pin_repo ∘ split_pinned is the identity, through the contract's JSON too."""
    message = AnsibleDeployMessage(
        project_id="p",
        project_name="p",
        repo_full_name=pin_repo(name, sha),
        server_ip="127.0.0.1",
        port=1,
        github_token_ref="none",
        secrets_ref="none",
    )
    wire = AnsibleDeployMessage.model_validate_json(message.model_dump_json())
    assert split_pinned(wire.repo_full_name) == (name, sha)


@pytest.mark.parametrize(
    "value",
    ["acme/shop", "acme/shop@main", "acme/shop@" + SHA[:12], "/abs/path.git", "@" + SHA],
)
def test_anything_but_a_trailing_full_sha_is_no_pin(value: str) -> None:
    """Names without `@<40 hex>` (a branch, a short sha, nothing before `@`) are unpinned."""
    assert split_pinned(value) == (value, None)


def test_pin_repo_refuses_a_short_sha() -> None:
    """Only full shas are pinned (a prefix could name another commit later)."""
    with pytest.raises(ValueError, match="not a full commit sha"):
        pin_repo("acme/shop", SHA[:7])


def test_deploy_spec_round_trip_and_other_specs() -> None:
    """`commit <sha>` names the commit (any case, spaces); other specs name none; the form
    with a bad sha is an error."""
    assert commit_of_spec(deploy_spec(SHA)) == SHA
    assert commit_of_spec(f"  Commit {SHA.upper()} ") == SHA
    assert commit_of_spec(None) is None
    assert commit_of_spec("deploy the shop") is None
    with pytest.raises(ValueError, match="not a full commit sha"):
        commit_of_spec("commit 12ab")
