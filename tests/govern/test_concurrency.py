"""Several processes change principals and policies of one project at once: nothing is lost."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from fluvial.govern.audit import open_audit
from fluvial.govern.policy import open_policy
from fluvial.project import Project

WORKERS, EACH = 4, 10


def _work(root: str, worker: int) -> None:
    policy = open_policy(Project(root))
    for n in range(EACH):
        name = f"w{worker}-p{n}"
        policy.principals.create(name, roles=["analyst"])
        policy.grant("SELECT", on=f"curated.t{n}", to=name)


def test_concurrent_writers(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "p")
    open_policy(project).principals.create_role("analyst")
    ctx = mp.get_context("spawn")  # fresh interpreters: nothing shared but the files
    procs = [ctx.Process(target=_work, args=(str(project.root), w)) for w in range(WORKERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    policy = open_policy(project)
    assert len(policy.principals.list()) == WORKERS * EACH
    assert len(policy.grants()) == WORKERS * EACH
    records = list(open_audit(project).records())
    assert len(records) == 1 + 2 * WORKERS * EACH  # the role, then a create and a grant each
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert open_audit(project).verify().ok


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "p")
    policy = open_policy(project)
    _, secret = policy.principals.create("ann")
    assert policy.principals.authenticate(secret).name == "ann"  # the parent's connection
    ctx = mp.get_context("fork")
    child = ctx.Process(target=_authenticate_and_create, args=(str(project.root), secret))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert policy.principals.get("made-in-child").name == "made-in-child"
    assert policy.principals.authenticate(secret).name == "ann"


def _authenticate_and_create(root: str, secret: str) -> None:
    policy = open_policy(Project(root))
    assert policy.principals.authenticate(secret).name == "ann"
    policy.principals.create("made-in-child")
