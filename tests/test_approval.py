"""Human approval as policy: the canary step asks instead of promoting, ``kfloop approve|reject`` decides,
the next run applies it through the deploy path (approver and reason in the alias history), a pending
approval expires with the configured outcome, and worse evidence rolls back whatever was approved."""

from __future__ import annotations

import datetime as dt

import pytest

from components.canary import canary as C
from kfloop import approvals, config
from kfloop.app.cli import main
from tests.test_canary import END, NAME, NOW, _traffic, champion_and_canary

APPROVAL = config.ApprovalConfig(policy="approval", expiry_hours=24)


@pytest.fixture
def two(tmp_path):
    """A store with champion v0001 and canary v0002 (tests/test_canary.py's)."""
    return champion_and_canary(tmp_path)


def _judge(root, now=NOW, cfg=APPROVAL):
    return C.judge(root, NAME, now=now, window_end=END, approval_cfg=cfg)


def _cli(*argv) -> tuple[int, str]:
    """Runs ``kfloop ARGV`` in-process: (exit status, the error line a SystemExit carries or "")."""
    try:
        return main(list(argv)), ""
    except SystemExit as e:
        if isinstance(e.code, str):
            return 1, e.code
        return e.code, ""


def _history(ms):
    return [r for r in ms.history(NAME) if r.get("event") == "alias"]


def test_a_promotable_canary_waits_for_approval_with_its_evidence(two):
    root, ms, v1, v2 = two
    _traffic(root, v1, v2, 2000, canary_shift=1.0)
    out = _judge(root)
    assert out["action"] == C.WAIT and out["verdict"] == "awaiting_approval"
    assert ms.aliases(NAME) == {"champion": v1, "canary": v2}  # nothing moved
    req = approvals.read_request(root, NAME, v2)
    assert req["champion_version"] == v1 and req["on_expiry"] == "keep"
    assert req["expires_at"] == "2016-01-02T00:00:00.000Z"  # 24 h on the monitoring clock
    ev = req["evidence"]
    assert ev["verdict"] == "better" and ev["comparison"]["low"] > 0 and ev["comparison"]["rows"] == 2000
    assert f"kfloop approve|reject {NAME} {v2}" in out["summary"]
    # a second run while pending: still waiting, the request (and its expiry) unchanged
    again = _judge(root, now=NOW + dt.timedelta(hours=1))
    assert again["verdict"] == "awaiting_approval" and approvals.read_request(root, NAME, v2) == req
    assert approvals.list_requests(root, NAME)[0]["state"] == approvals.PENDING


def test_approval_is_applied_by_the_next_run_with_the_approver_in_the_alias_history(two, capsys):
    root, ms, v1, v2 = two
    _traffic(root, v1, v2, 2000, canary_shift=1.0)
    _judge(root)
    rc, _ = _cli(
        "approve", NAME, v2, "--by", "ana@example.com", "--reason", "checked the slices", "--store", root
    )
    assert rc == 0 and "approved by ana@example.com" in capsys.readouterr().out
    assert ms.aliases(NAME) == {"champion": v1, "canary": v2}  # the decision alone moves nothing
    out = _judge(root, now=NOW + dt.timedelta(hours=2))
    assert out["action"] == C.PROMOTE and out["verdict"] == "approved"
    assert ms.aliases(NAME) == {"champion": v2}
    move = next(r for r in reversed(_history(ms)) if r["alias"] == "champion")
    assert move["to"] == v2 and move["actor"] == "ana@example.com"
    assert "approved by ana@example.com: checked the slices" in move["reason"]
    assert approvals.read_outcome(root, NAME, v2)["outcome"] == C.PROMOTE
    # the decision is final and the request closed
    rc, err = _cli("reject", NAME, v2, "--by", "bob", "--reason", "late", "--store", root)
    assert rc == 1 and "already approved by ana@example.com" in err


def test_a_rejection_rolls_the_canary_back_under_the_approvers_name(two):
    root, ms, v1, v2 = two
    _traffic(root, v1, v2, 2000, canary_shift=1.0)
    _judge(root)
    approvals.decide(root, NAME, v2, approve=False, by="bob", reason="fairness review failed")
    out = _judge(root, now=NOW + dt.timedelta(hours=2))
    assert out["action"] == C.REJECT and out["verdict"] == "rejected"
    assert ms.aliases(NAME) == {"champion": v1}
    last = _history(ms)[-1]
    assert last["alias"] == "canary" and last["actor"] == "bob" and "fairness review failed" in last["reason"]


@pytest.mark.parametrize("on_expiry", ["keep", "promote"])
def test_a_pending_approval_expires_with_the_configured_outcome(two, on_expiry):
    root, ms, v1, v2 = two
    _traffic(root, v1, v2, 2000, canary_shift=1.0)
    cfg = config.ApprovalConfig(policy="approval", expiry_hours=24, on_expiry=on_expiry)
    _judge(root, cfg=cfg)
    before = _judge(root, now=NOW + dt.timedelta(hours=23, minutes=59), cfg=cfg)
    assert before["verdict"] == "awaiting_approval"
    out = _judge(root, now=NOW + dt.timedelta(hours=24), cfg=cfg)
    assert out["verdict"] == "approval_expired"
    if on_expiry == "keep":
        assert out["action"] == C.REJECT and ms.aliases(NAME) == {"champion": v1}
    else:
        assert out["action"] == C.PROMOTE and ms.aliases(NAME) == {"champion": v2}
    assert "approval expired" in _history(ms)[-2 if on_expiry == "promote" else -1]["actor"]
    assert approvals.state(root, NAME, v2)[0] == approvals.EXPIRED
    with pytest.raises(approvals.ApprovalError, match="closed"):
        approvals.decide(root, NAME, v2, approve=True, by="ana", reason="too late")


def test_worse_evidence_rolls_back_even_an_approved_canary(two):
    root, ms, v1, v2 = two
    _traffic(root, v1, v2, 2000, canary_shift=1.0)
    _judge(root)
    approvals.decide(root, NAME, v2, approve=True, by="ana", reason="ok")
    _traffic(root, v1, v2, 6000, seed=1, canary_shift=-2.0)  # the canary is now clearly worse
    out = _judge(root, now=NOW + dt.timedelta(hours=2))
    assert out["action"] == C.REJECT and out["verdict"] in ("worse", "unhealthy")
    assert ms.aliases(NAME) == {"champion": v1}
    assert any("rolled back on the evidence" in r["message"] for r in out["reasons"])


def test_auto_policy_promotes_as_before_and_records_no_request(two):
    root, _, v1, v2 = two
    _traffic(root, v1, v2, 2000, canary_shift=1.0)
    out = _judge(root, cfg=config.ApprovalConfig())
    assert out["action"] == C.PROMOTE and approvals.read_request(root, NAME, v2) is None


def test_approve_cli_errors_are_one_line(two, capsys):
    root, _, _, v2 = two
    rc, err = _cli("approve", NAME, v2, "--by", "ana", "--reason", "x", "--store", root)
    assert (
        rc == 1 and "\n" not in err and "has no approval request" in err and "no approval is pending" in err
    )
    rc, err = _cli("approve", NAME, v2, "--by", " ", "--reason", "x", "--store", root)
    assert rc == 1 and "--by" in err
    rc, _ = _cli("approve", NAME, v2, "--reason", "x", "--store", root)
    assert rc == 2 and "--by" in capsys.readouterr().err


def test_bad_approval_config_names_the_field():
    with pytest.raises(ValueError, match="ApprovalConfig.policy"):
        config.ApprovalConfig(policy="manual")
    with pytest.raises(ValueError, match="ApprovalConfig.on_expiry"):
        config.ApprovalConfig(on_expiry="drop")
    with pytest.raises(ValueError, match="ApprovalConfig.expiry_hours"):
        config.ApprovalConfig(expiry_hours=0)


def test_on_a_cluster_the_approval_is_applied_to_the_inference_service(two):
    """The same decision path on a cluster: pending touches no InferenceService; the approved promotion is
    the same apply as an automatic one (recorded by a loopback Kubernetes API)."""
    from tests.fake_apis import FakeKubeApi
    from tests.test_canary import _live_canary

    root, ms, v1, v2 = two
    with FakeKubeApi() as api:
        c, n = _live_canary(root, v1, v2, api)
        _traffic(root, v1, v2, 2000, canary_shift=1.0)
        kw = dict(window_end=END, mode="cluster", namespace="ml", cluster=c, approval_cfg=APPROVAL)
        out = C.judge(root, NAME, now=NOW, **kw)
        assert out["verdict"] == "awaiting_approval"
        assert [r["method"] for r in api.requests[n:] if r["method"] == "PATCH"] == []  # nothing applied
        approvals.decide(root, NAME, v2, approve=True, by="ana", reason="ok")
        out = C.judge(root, NAME, now=NOW + dt.timedelta(hours=1), **kw)
        assert out["action"] == C.PROMOTE
        (patch,) = [r for r in api.requests[n:] if r["method"] == "PATCH"]
        pred = patch["body"]["spec"]["predictor"]
        assert pred["canaryTrafficPercent"] == 100 and f"--model-ref={v2}" in pred["model"]["args"]
        assert ms.aliases(NAME) == {"champion": v2}
