"""Every action against httpx.MockTransport: the exact request (method, URL, body, auth)."""

from __future__ import annotations

import base64
import json
import logging

import httpx
import pytest

from aisoar.errors import ActionCheckFailed, ActionTargetError, ConfigError
from playbooks.actions import ACTIONS, ActionContext
from playbooks.actions.base import TargetHTTPError, token_label
from playbooks.connections import (
    AlertmanagerSettings,
    Connections,
    MlflowSettings,
    OAuthSettings,
    PagerDutySettings,
    SlackSettings,
)
from playbooks.credentials import InMemoryCredentialStore
from tests.playbooks.helpers import (
    NOW,
    FakeAlertmanager,
    FakeMlflow,
    FakeOAuth,
    Recorder,
    form,
    incident,
    model_incident,
)

OAUTH = OAuthSettings.from_issuer("http://idp", "aisoar-responder", "s3cr3t")
CONN = Connections(oauth=OAUTH, mlflow=MlflowSettings(url="http://mlflow"),
                   alertmanager=AlertmanagerSettings(url="http://am", approvals_url="http://aisoar/api/actions"),
                   pagerduty=PagerDutySettings(routing_key="R" * 32, url="http://pd/v2/enqueue"),
                   slack=SlackSettings(webhook_url="http://slack/services/T1/B2/XYZ"))


def ctx(name, params, rec, *, inc=None, creds=None):
    action = ACTIONS[name]
    return action, ActionContext(params=action.check_parameters(params), client=rec.client(), connections=CONN,
                                 now=NOW, incident=inc or incident(), credentials=creds or InMemoryCredentialStore())


def creds(*tokens: str) -> InMemoryCredentialStore:
    store = InMemoryCredentialStore()
    for t in tokens:
        store.register("cred-7", t)
    return store


def test_registry_lists_every_action():
    assert sorted(ACTIONS) == ["identity:introspect", "identity:revoke_token", "notify:log", "oncall:alertmanager",
                               "oncall:pagerduty", "oncall:slack", "registry:quarantine", "registry:rollback"]
    for name, action in ACTIONS.items():
        assert action.name == name and action.description


async def test_revoke_sends_rfc7009_with_basic_auth_and_verifies_by_introspection():
    idp = FakeOAuth({"tok-a", "tok-b"})
    rec = Recorder(idp)
    action, c = ctx("identity:revoke_token", {"credential_id": "cred-7"}, rec, creds=creds("tok-a", "tok-b"))
    await action.checks(c)
    result = await action.run(c)
    revocations = [r for r in rec.requests if r.url.path == "/token/revocation"]
    assert [(r.method, str(r.url)) for r in revocations] == [("POST", "http://idp/token/revocation")] * 2
    assert [form(r) for r in revocations] == [{"token": "tok-a", "token_type_hint": "access_token"},
                                              {"token": "tok-b", "token_type_hint": "access_token"}]
    expected = "Basic " + base64.b64encode(b"aisoar-responder:s3cr3t").decode()
    assert all(r.headers["authorization"] == expected for r in rec.requests)
    assert revocations[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert [form(r) for r in rec.requests if r.url.path == "/token/introspection"] == [{"token": "tok-a"},
                                                                                        {"token": "tok-b"}]
    assert result.response_status == 200 and result.detail["revoked"] == 2
    assert "tok-a" not in json.dumps(result.detail)
    assert await action.already_done(c)


async def test_revoke_fails_when_introspection_still_active():
    idp = FakeOAuth({"tok-a"})
    idp.ignore_revocations = True  # 200 proves nothing (RFC 7009)
    action, c = ctx("identity:revoke_token", {"credential_id": "cred-7"}, Recorder(idp), creds=creds("tok-a"))
    with pytest.raises(ActionTargetError, match="still active"):
        await action.run(c)


async def test_revoke_plan_redacts_token_and_secret():
    rec = Recorder(FakeOAuth({"tok-a"}))
    action, c = ctx("identity:revoke_token", {"credential_id": "cred-7"}, rec, creds=creds("tok-a"))
    plan = await action.plan(c)
    assert plan == {"requests": [{"method": "POST", "url": "http://idp/token/revocation", "auth": "Basic <redacted>",
                                  "form": {"token": token_label("tok-a"), "token_type_hint": "access_token"}}]}
    assert "s3cr3t" not in json.dumps(plan) and "tok-a" not in json.dumps(plan)
    assert rec.requests == []  # planning calls nothing


async def test_revoke_check_refuses_unknown_credential():
    action, c = ctx("identity:revoke_token", {"credential_id": "cred-7"}, Recorder(FakeOAuth(set())))
    with pytest.raises(ActionCheckFailed, match="no tokens"):
        await action.checks(c)


async def test_transport_error_is_wrapped_and_retryable():
    def boom(request):
        raise httpx.ConnectError("refused", request=request)

    action, c = ctx("identity:revoke_token", {"credential_id": "cred-7"}, Recorder(boom), creds=creds("t"))
    with pytest.raises(TargetHTTPError) as info:
        await action.run(c)
    assert info.value.retryable and isinstance(info.value.__cause__, httpx.ConnectError)


async def test_http_4xx_is_not_retryable_5xx_is():
    for status, retryable in ((401, False), (503, True), (429, True)):
        idp = FakeOAuth({"t"})
        idp.revoke_status = status
        action, c = ctx("identity:revoke_token", {"credential_id": "cred-7"}, Recorder(idp), creds=creds("t"))
        with pytest.raises(TargetHTTPError) as info:
            await action.run(c)
        assert (info.value.status_code, info.value.retryable) == (status, retryable)


async def test_introspect_action():
    action, c = ctx("identity:introspect", {"credential_id": "cred-7", "expect_inactive": True},
                    Recorder(FakeOAuth({"t"})), creds=creds("t"))
    with pytest.raises(ActionTargetError, match="still active"):
        await action.run(c)


def _mlflow(versions=None, alias=None):
    return FakeMlflow(versions or {"1": {}, "2": {}, "3": {}}, alias or {"champion": "3"})


async def test_quarantine_tags_and_moves_alias():
    reg = _mlflow()
    rec = Recorder(reg)
    action, c = ctx("registry:quarantine", {"model_name": "fraud", "model_version": "3", "reason": "drift"}, rec,
                    inc=model_incident())
    await action.checks(c)
    result = await action.run(c)
    posts = [(r.method, str(r.url), json.loads(r.content)) for r in rec.mutating]
    base = "http://mlflow/api/2.0/mlflow"
    assert posts == [
        ("POST", f"{base}/model-versions/set-tag", {"name": "fraud", "version": "3", "key": "aisoar.quarantined",
                                                    "value": "true"}),
        ("POST", f"{base}/model-versions/set-tag", {"name": "fraud", "version": "3",
                                                    "key": "aisoar.quarantine_reason", "value": "drift"}),
        ("POST", f"{base}/model-versions/set-tag", {"name": "fraud", "version": "3",
                                                    "key": "aisoar.quarantine_incident", "value": "inc-m"}),
        ("POST", f"{base}/registered-models/alias", {"name": "fraud", "alias": "champion", "version": "2"}),
    ]
    assert reg.alias == {"champion": "2"} and result.detail["alias_moved_to"] == "2"
    assert await action.already_done(c)


async def test_quarantine_refuses_last_serving_version():
    reg = _mlflow({"1": {"aisoar.quarantined": "true"}, "3": {}}, {"champion": "3"})
    rec = Recorder(reg)
    action, c = ctx("registry:quarantine", {"model_name": "fraud", "model_version": "3"}, rec, inc=model_incident())
    with pytest.raises(ActionCheckFailed, match="last serving version"):
        await action.checks(c)
    assert rec.mutating == []


async def test_quarantine_of_a_non_serving_version_only_tags():
    reg = _mlflow(alias={"champion": "2"})
    rec = Recorder(reg)
    action, c = ctx("registry:quarantine", {"model_name": "fraud", "model_version": "3"}, rec, inc=model_incident())
    await action.checks(c)
    await action.run(c)
    assert [r.url.path.rsplit("/", 1)[-1] for r in rec.mutating] == ["set-tag"] * 3 and reg.alias["champion"] == "2"


async def test_rollback_prefers_known_good_then_older_versions():
    reg = _mlflow({"1": {"aisoar.known_good": "true"}, "2": {}, "3": {"aisoar.quarantined": "true"}, "4": {}},
                  {"champion": "3"})
    rec = Recorder(reg)
    action, c = ctx("registry:rollback", {"model_name": "fraud", "from_version": "3"}, rec, inc=model_incident())
    await action.checks(c)
    plan = await action.plan(c)
    assert plan["requests"] == [{"method": "POST", "url": "http://mlflow/api/2.0/mlflow/registered-models/alias",
                                 "json": {"name": "fraud", "alias": "champion", "version": "1"}}]
    await action.run(c)
    assert reg.alias["champion"] == "1"
    rec.requests.clear()
    await action.run(c)  # alias already off the bad version: nothing to do
    assert rec.mutating == [] and await action.already_done(c)


async def test_rollback_refuses_without_a_good_version():
    reg = _mlflow({"3": {}}, {"champion": "3"})
    action, c = ctx("registry:rollback", {"model_name": "fraud", "from_version": "3"}, Recorder(reg),
                    inc=model_incident())
    with pytest.raises(ActionCheckFailed, match="no known-good"):
        await action.checks(c)


async def test_alertmanager_fire_and_resolve():
    am = FakeAlertmanager()
    rec = Recorder(am)
    action, c = ctx("oncall:alertmanager", {"alertname": "AisoarLeakedCredential", "summary": "cred-7 revoked"}, rec)
    await action.run(c)
    (req,) = rec.requests
    assert (req.method, str(req.url)) == ("POST", "http://am/api/v2/alerts")
    assert json.loads(req.content) == [{
        "labels": {"alertname": "AisoarLeakedCredential", "severity": "high", "incident_id": "inc-1",
                   "rule": "incident.single_finding"},
        "annotations": {"summary": "cred-7 revoked",
                        "approvals": "http://aisoar/api/actions?status=pending&incident_id=inc-1"},
        "startsAt": "2026-11-25T03:00:00Z", "endsAt": "2026-11-25T07:00:00Z"}]
    assert await action.already_done(c)
    action, c = ctx("oncall:alertmanager", {"alertname": "AisoarLeakedCredential", "resolve": True}, rec)
    await action.run(c)
    assert json.loads(rec.requests[-1].content)[0]["endsAt"] == "2026-11-25T03:00:00Z"


def _check_pagerduty_schema(body):
    # PagerDuty Events API v2, per its documented schema.
    assert len(body["routing_key"]) == 32 and body["event_action"] in ("trigger", "acknowledge", "resolve")
    assert 0 < len(body["dedup_key"]) <= 255
    if body["event_action"] == "trigger":
        payload = body["payload"]
        assert {"summary", "source", "severity"} <= payload.keys()
        assert 0 < len(payload["summary"]) <= 1024
        assert payload["severity"] in ("critical", "error", "warning", "info")


async def test_pagerduty_events_v2_payload():
    seen = []

    def receiver(request):
        body = json.loads(request.content)
        _check_pagerduty_schema(body)
        seen.append(body)
        return httpx.Response(202, json={"status": "success", "message": "Event processed",
                                         "dedup_key": body["dedup_key"]})

    action, c = ctx("oncall:pagerduty", {"summary": "leaked key"}, Recorder(receiver))
    result = await action.run(c)
    assert result.response_status == 202
    assert seen[0]["payload"]["severity"] == "error" and seen[0]["dedup_key"] == "inc-1"
    plan = await action.plan(c)
    assert plan["requests"][0]["json"]["routing_key"] == "<redacted>"
    action, c = ctx("oncall:pagerduty", action.resolve_params({"summary": "x"}), Recorder(receiver))
    await action.run(c)
    assert seen[-1] == {"routing_key": "R" * 32, "event_action": "resolve", "dedup_key": "inc-1"}


async def test_slack_webhook_payload():
    seen = []

    def receiver(request):
        body = json.loads(request.content)
        # Slack incoming webhook: text (fallback) + blocks with header/section text objects.
        assert isinstance(body["text"], str) and body["text"]
        for block in body["blocks"]:
            assert block["type"] in ("header", "section")
            assert block["text"]["type"] == ("plain_text" if block["type"] == "header" else "mrkdwn")
        assert len(body["blocks"][0]["text"]["text"]) <= 150
        seen.append(body)
        return httpx.Response(200, text="ok")

    rec = Recorder(receiver)
    action, c = ctx("oncall:slack", {}, rec)
    await action.run(c)
    assert str(rec.requests[0].url) == "http://slack/services/T1/B2/XYZ"
    assert seen[0]["blocks"][0]["text"]["text"] == "[HIGH] Leaked secret"
    plan = await action.plan(c)
    assert plan["requests"][0]["url"] == "http://slack/<redacted>"


async def test_notify_log(caplog):
    rec = Recorder(lambda r: httpx.Response(500))
    action, c = ctx("notify:log", {"message": "please use the approved assistant", "recipient": "alice"}, rec)
    with caplog.at_level(logging.INFO, logger="aisoar.playbooks.notify"):
        await action.run(c)
    assert "approved assistant" in caplog.text and rec.requests == []


def test_check_parameters_refuses_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown field `tokn`"):
        ACTIONS["identity:revoke_token"].check_parameters({"credential_id": "c", "tokn": "x"})
    with pytest.raises(ConfigError, match="severity"):
        ACTIONS["oncall:alertmanager"].check_parameters({"severity": "urgent"})


async def test_alertmanager_plan_is_the_description_of_its_request():
    """plan() skips building the request, but must say exactly what describe_request would."""
    from playbooks.actions.base import describe_request

    for params in ({"alertname": "AisoarLeakedCredential", "summary": "cred-7 revoked"}, {"resolve": True}):
        action, c = ctx("oncall:alertmanager", params, Recorder(FakeAlertmanager()))
        assert await action.plan(c) == {"requests": [describe_request(r) for r in await action.requests(c)]}


async def test_alert_batcher_splits_at_max_batch_and_does_not_keep_its_client():
    import asyncio
    import gc
    import weakref

    from playbooks.actions import _alert_batch

    am = FakeAlertmanager()
    client = Recorder(am).client()
    batcher = _alert_batch.AlertBatcher(client, "http://am/api/v2/alerts", max_batch=2, max_in_flight=1)
    outcomes = await asyncio.gather(*(batcher.submit({"labels": {"n": str(i)}}) for i in range(5)))
    assert [len(post) for post in am.posts] == [2, 2, 1] and batcher.posts == 3
    assert [o.batch_size for o in outcomes] == [2, 2, 2, 2, 1] and all(o.error is None for o in outcomes)
    assert [a["labels"]["n"] for post in am.posts for a in post] == ["0", "1", "2", "3", "4"]

    _alert_batch.batcher_for(client, "http://am/api/v2/alerts")
    gone = weakref.ref(client)
    await client.aclose()
    del client, batcher
    gc.collect()
    assert gone() is None  # the batcher registry does not keep a (closed) client alive
