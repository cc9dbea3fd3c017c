"""Approvals over HTTP (aiohttp, which Faust already ships): a JSON API and a small web page.

JSON API, guarded by bearer tokens (for ``aisoar actions ...``):

- ``GET  /api/actions?status=pending[&incident_id=...]``  pending approvals (JSON list)
- ``POST /api/actions/{action_id}/approve``   decide (see ``decide`` below)
- ``POST /api/actions/{action_id}/deny``

Web page, guarded by a session cookie (for the on-call alert's ``approvals`` link):

- ``GET  /login`` / ``POST /login``          approver token (and optional name) → session cookie
- ``GET  /approvals[?incident_id=...]``       pending actions
- ``GET  /approvals/{action_id}``             one action with its incident context and the exact
  (redacted) requests it will send, with Approve / Deny forms
- ``POST /approvals/{action_id}/approve|deny`` the same decision path, CSRF-checked; then
  ``GET /approvals/{action_id}/result``
- ``POST /logout``

``tokens`` maps an approver's name to their token; the name becomes the audit ``actor``.
Tokens are compared in constant time (``hmac.compare_digest``) against every approver; a
missing or wrong token answers 401 and is logged with the peer address, never the token.
The session cookie holds a random id mapped in memory to the actor (``HttpOnly``,
``SameSite=Strict``, ``Secure`` over TLS), expiring after ``session_ttl_s``; each session
has its own CSRF token. Every value shown on a page is HTML-escaped (rule names, entity
ids and summaries are attacker-influenced), and every response carries a strict
Content-Security-Policy (no script at all), ``X-Frame-Options: DENY`` and
``Referrer-Policy: no-referrer``.

Deciding: with ``decide=None`` the handler calls ``Engine.approve`` / ``Engine.deny``
directly. The Faust worker passes ``decide`` instead: its tables can only change while an
agent processes a record, so ``decide(pending, approve, actor)`` publishes a decision and
returns ``None``; the API then answers ``202 {"status": "accepted", "action_id": ...}`` and
the page says the decision is being applied. Mount the app on the Faust web server or run
it with :func:`serve`.

TLS: ``serve(app, host, port, ssl_context=server_ssl_context(cert, key[, client_ca]))``
serves https only (a plain-http request gets the connection closed during the handshake);
with ``client_ca`` every client must also present a certificate signed by it (mutual
TLS). The bearer token or session is still required on top of either.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import secrets
import ssl
import string
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec
from aiohttp import web

from aisoar.actions import ActionRecord
from aisoar.errors import ActionError, ConfigError
from playbooks.actions import ActionContext
from playbooks.approvals import PendingApproval
from playbooks.engine import Engine

__all__ = ["Decide", "make_app", "serve", "server_ssl_context"]

log = logging.getLogger("aisoar.playbooks.approvals_api")

#: ``decide(pending, approve, actor)``: apply (records) or submit (None) a person's decision.
Decide = Callable[[PendingApproval, bool, str], Awaitable[list[ActionRecord] | None]]

_ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
_ACTOR: web.RequestKey[str] = web.RequestKey("actor", str)

COOKIE = "aisoar_session"
_WEB = Path(__file__).with_name("web")
_TEMPLATES = {p.stem: string.Template(p.read_text("utf-8")) for p in sorted((_WEB / "templates").glob("*.html"))}
_CSS = (_WEB / "static" / "approvals.css").read_bytes()
_SECURITY_HEADERS = {
    # No script anywhere: plain forms and one same-origin stylesheet.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_PLAN_TIMEOUT_S = 10.0


# ---------------------------------------------------------------------- escaping
class _Html(str):
    """Markup that is already safe: escaped values and fragments built from them."""


def _e(value: object) -> _Html:
    """Escape anything that is not already :class:`_Html`."""
    if isinstance(value, _Html):
        return value
    return _Html(html.escape("" if value is None else str(value), quote=True))


def _render(template: str, **values: object) -> _Html:
    """Fill ``playbooks/web/templates/<template>.html``; every value is escaped unless ``_Html``."""
    return _Html(_TEMPLATES[template].substitute({k: _e(v) for k, v in values.items()}))


def _join(parts: Iterable[object], sep: str = ", ") -> _Html:
    return _Html(sep.join(_e(p) for p in parts))


def _time(ts: datetime) -> str:
    return ts.isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------- auth
def _actor_for_token(presented: str, tokens: Mapping[str, str]) -> str | None:
    if not presented:
        return None
    found = None
    for actor, token in tokens.items():  # compare against all: timing does not reveal which matched
        if hmac.compare_digest(presented.encode(), token.encode()):
            found = actor
    return found


def _actor_for(request: web.Request, tokens: Mapping[str, str]) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return _actor_for_token(presented, tokens)


@dataclass
class _Outcome:
    """What a decision did, kept in the deciding session for the result page."""

    approve: bool
    status: int  # the JSON API's HTTP status for the same decision
    records: list[ActionRecord] | None  # None: accepted, being applied by the worker
    error: str = ""


@dataclass
class _Session:
    actor: str
    csrf: str
    expires_at: datetime
    results: dict[str, _Outcome] = field(default_factory=dict)


class _Sessions:
    """Random session ids → actor, in memory (a restart signs everyone out)."""

    def __init__(self, ttl: timedelta, now: Callable[[], datetime]) -> None:
        self.ttl, self.now = ttl, now
        self._by_id: dict[str, _Session] = {}

    def create(self, actor: str) -> tuple[str, _Session]:
        now = self.now()
        for sid in [s for s, v in self._by_id.items() if v.expires_at <= now]:
            del self._by_id[sid]
        sid = secrets.token_urlsafe(32)
        session = self._by_id[sid] = _Session(actor, secrets.token_urlsafe(32), now + self.ttl)
        return sid, session

    def get(self, sid: str | None) -> _Session | None:
        session = self._by_id.get(sid) if sid else None
        if session is not None and session.expires_at <= self.now():
            del self._by_id[sid]  # type: ignore[arg-type]
            return None
        return session

    def drop(self, sid: str | None) -> None:
        if sid:
            self._by_id.pop(sid, None)


class _Decided(Exception):
    """A decision was already submitted for this action and is being applied."""

    def __init__(self, actor: str, approve: bool) -> None:
        super().__init__(f"{'approval' if approve else 'denial'} by {actor} is being applied")


# ---------------------------------------------------------------------- the app
def make_app(engine: Engine, tokens: Mapping[str, str], *, decide: Decide | None = None,
             clock: Callable[[], datetime] | None = None, session_ttl_s: float = 8 * 3600.0,
             secure_cookie: bool | None = None) -> web.Application:
    """The approvals app. ``decide``: see the module docstring (None = ``Engine.approve/deny``).
    ``secure_cookie``: force the cookie's ``Secure`` flag (behind a TLS-terminating proxy);
    None = only when the request came over TLS."""
    if not tokens or any(not t for t in tokens.values()):
        raise ValueError("at least one non-empty approver token is required")
    if session_ttl_s <= 0:
        raise ValueError("session_ttl_s must be positive")
    now = clock or engine.clock
    sessions = _Sessions(timedelta(seconds=session_ttl_s), now)
    submitted: dict[str, tuple[str, bool]] = {}  # action_id -> (actor, approve), until the worker applies it

    # ------------------------------------------------------------ shared decision path
    def in_flight(action_id: str) -> tuple[str, bool] | None:
        if action_id in submitted and engine.approvals.get(action_id) is None:
            del submitted[action_id]  # the worker applied it
        return submitted.get(action_id)

    async def apply(action_id: str, approve: bool, actor: str, via: str) -> _Outcome:
        """The one decision path of both the API and the page. ``KeyError``: not pending."""
        pending = engine.approvals.get(action_id)
        if pending is None:
            raise KeyError(action_id)
        if (busy := in_flight(action_id)) is not None:
            raise _Decided(*busy)
        log.info("approvals: %s %s %s (%s on %s, incident %s) via %s", actor, "approves" if approve else "denies",
                 action_id, pending.action, pending.target, pending.incident.id, via)
        if decide is None:
            fn = engine.approve if approve else engine.deny
            records: list[ActionRecord] | None = await fn(action_id, actor, now())
        elif pending.expires_at <= now():
            return _Outcome(approve, 409, [], error="the approval expired before the decision")
        else:
            records = await decide(pending, approve, actor)
            if records is None:
                submitted[action_id] = (actor, approve)
                return _Outcome(approve, 202, None)
        status = 409 if records and records[-1].status == "expired" else 200
        return _Outcome(approve, status, records)

    def pending_list(incident_id: str | None) -> list[PendingApproval]:
        for action_id in list(submitted):
            in_flight(action_id)
        pending = engine.list_pending(now())
        return [p for p in pending if not incident_id or p.incident.id == incident_id]

    # ------------------------------------------------------------ middleware / headers
    @web.middleware
    async def api_auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if not request.path.startswith("/api/"):
            return await handler(request)
        if (request.method == "GET" and request.path == "/api/actions" and "Authorization" not in request.headers
                and "text/html" in request.headers.get("Accept", "")):
            # A person clicked an alert link pointing at the API: send them to the page.
            raise web.HTTPSeeOther("/approvals" + (f"?{request.query_string}" if request.query_string else ""))
        actor = _actor_for(request, tokens)
        if actor is None:
            log.warning("approvals API: rejected %s %s from %s (missing or invalid bearer token)",
                        request.method, request.path, request.remote)
            return web.json_response({"error": "unauthorized"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="aisoar"'})
        request[_ACTOR] = actor
        return await handler(request)

    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Cache-Control", "no-store")

    # ------------------------------------------------------------ JSON API
    async def api_list(request: web.Request) -> web.Response:
        status = request.query.get("status", "pending")
        if status != "pending":
            return web.json_response({"error": "only status=pending is served here; the audit trail is in the SIEM"},
                                     status=400)
        pending = pending_list(request.query.get("incident_id"))
        return web.Response(body=msgspec.json.encode(pending), content_type="application/json")

    async def api_decide(request: web.Request) -> web.Response:
        action_id, verb = request.match_info["action_id"], request.match_info["verb"]
        try:
            outcome = await apply(action_id, verb == "approve", request[_ACTOR], "api")
        except KeyError:
            return web.json_response({"error": f"no pending action {action_id}"}, status=404)
        except _Decided as exc:
            return web.json_response({"error": str(exc), "action_id": action_id}, status=409)
        except Exception:  # e.g. the broker is down: the decision was not submitted, it stays pending
            log.exception("approvals API: decision on %s by %s could not be submitted", action_id, request[_ACTOR])
            return web.json_response({"error": "the decision could not be submitted; still pending, try again",
                                      "action_id": action_id}, status=503)
        if outcome.records is None:
            return web.json_response({"status": "accepted", "action_id": action_id}, status=202)
        body: dict[str, Any] = {"action_id": action_id, "records": outcome.records}
        if outcome.error:
            body["error"] = outcome.error
        return web.Response(body=msgspec.json.encode(body), status=outcome.status, content_type="application/json")

    # ------------------------------------------------------------ web page helpers
    def page(title: str, body: _Html, session: _Session | None = None, status: int = 200) -> web.Response:
        nav = _render("nav", actor=session.actor, csrf=session.csrf) if session else _Html("")
        return web.Response(text=_render("page", title=title, nav=nav, body=body), status=status,
                            content_type="text/html", charset="utf-8")

    def message(title: str, text: str, session: _Session | None, status: int) -> web.Response:
        return page(title, _render("message", heading=title, message=text), session, status)

    def session_of(request: web.Request) -> _Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    def login_redirect(request: web.Request) -> web.HTTPSeeOther:
        return web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")

    def same_origin(request: web.Request) -> bool:
        """Refuse forms posted from other sites. Browsers send ``Origin: null`` under our
        ``no-referrer`` policy, so ``Sec-Fetch-Site`` decides when they send it."""
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = request.headers.get("Origin", "null")
        return origin == "null" or urlsplit(origin).netloc == request.host

    async def session_post(request: web.Request) -> tuple[_Session, Mapping[str, str]] | web.Response:
        """A POST from the page: a live session, same origin, and the session's CSRF token."""
        session = session_of(request)
        if session is None:
            return message("Sign in required", "Your session has expired; sign in again.", None, 401)
        form = await request.post()
        presented = str(form.get("csrf_token", ""))
        if not same_origin(request) or not hmac.compare_digest(presented.encode(), session.csrf.encode()):
            log.warning("approvals web: refused %s %s from %s for %s (cross-site or bad CSRF token)",
                        request.method, request.path, request.remote, session.actor)
            return message("Request refused", "The form was not submitted from this page (CSRF check failed). "
                           "Reload the page and try again.", session, 403)
        return session, {k: str(v) for k, v in form.items()}

    # ------------------------------------------------------------ web page handlers
    async def static_css(request: web.Request) -> web.Response:
        return web.Response(body=_CSS, content_type="text/css", headers={"Cache-Control": "max-age=300"})

    async def login_form(request: web.Request) -> web.Response:
        target = _safe_next(request.query.get("next"))
        if session_of(request) is not None:
            raise web.HTTPSeeOther(target)
        return page("Sign in", _render("login", error=_Html(""), next=target, name=""))

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        name, presented = str(form.get("name", "")).strip(), str(form.get("token", ""))
        target = _safe_next(str(form.get("next", "")))
        actor = _actor_for_token(presented, tokens)
        if actor is None or (name and name != actor) or not same_origin(request):
            log.warning("approvals web: failed login for name %r from %s", name[:64], request.remote)
            error = _Html('<p class="error" role="alert">Unknown approver name or token.</p>')
            return page("Sign in", _render("login", error=error, next=target, name=name), status=401)
        sessions.drop(request.cookies.get(COOKIE))  # never keep a pre-login id (fixation)
        sid, _ = sessions.create(actor)
        log.info("approvals web: %s signed in from %s", actor, request.remote)
        response = web.HTTPSeeOther(target)
        response.set_cookie(COOKIE, sid, max_age=int(session_ttl_s), path="/", httponly=True, samesite="Strict",
                            secure=request.secure if secure_cookie is None else secure_cookie)
        raise response

    async def logout(request: web.Request) -> web.Response:
        checked = await session_post(request)
        if isinstance(checked, web.Response):
            return checked
        sessions.drop(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def list_page(request: web.Request) -> web.Response:
        session = session_of(request)
        if session is None:
            raise login_redirect(request)
        incident_id = request.query.get("incident_id") or None
        rows = [_pending_row(p, in_flight(p.action_id)) for p in pending_list(incident_id)]
        if not rows:
            rows = [_Html('<tr><td colspan="7" class="empty">No pending approvals'
                          f'{" for incident " + _e(incident_id) if incident_id else ""}.</td></tr>')]
        filtered = (_Html(f'<p class="filter">Incident <code>{_e(incident_id)}</code> — '
                          '<a href="/approvals">show all</a></p>') if incident_id else _Html(""))
        return page("Pending approvals", _render("list", filter=filtered, rows=_join(rows, "\n")), session)

    async def detail_page(request: web.Request) -> web.Response:
        session = session_of(request)
        if session is None:
            raise login_redirect(request)
        action_id = request.match_info["action_id"]
        pending = engine.approvals.get(action_id)
        if pending is None:
            if action_id in session.results:
                raise web.HTTPSeeOther(f"/approvals/{quote(action_id, safe='')}/result")
            return message("Not pending", f"There is no pending approval {action_id}: it was decided, "
                           "expired, or never existed.", session, 404)
        busy = in_flight(action_id)
        if busy is not None:
            notice = _Html(f'<p class="notice">A decision was submitted: {_e(_Decided(*busy))}.</p>')
            buttons = _Html("")
        elif pending.expires_at <= now():
            notice = _Html('<p class="notice">This approval has expired; it can no longer be approved.</p>')
            buttons = _Html("")
        else:
            notice = _Html("")
            buttons = _render("buttons", action_id=quote(action_id, safe=""), csrf=session.csrf)
        plan = await _plan_of(engine, pending, now())
        return page(f"{pending.action} on {pending.target}",
                    _detail(pending, plan, notice=notice, buttons=buttons), session)

    async def decide_page(request: web.Request) -> web.Response:
        checked = await session_post(request)
        if isinstance(checked, web.Response):
            return checked
        session, _form = checked
        action_id, approve = request.match_info["action_id"], request.match_info["verb"] == "approve"
        try:
            outcome = await apply(action_id, approve, session.actor, "web")
        except KeyError:
            return message("Not pending", f"There is no pending approval {action_id}: it was decided, "
                           "expired, or never existed.", session, 404)
        except _Decided as exc:
            return message("Already decided", f"{action_id}: {exc}.", session, 409)
        except Exception:  # e.g. the decision topic is unreachable: say so, keep it pending
            log.exception("approvals web: decision on %s by %s could not be submitted", action_id, session.actor)
            return message("Decision not recorded", "The decision could not be submitted; the action is still "
                           "pending. Try again shortly.", session, 503)
        session.results[action_id] = outcome
        raise web.HTTPSeeOther(f"/approvals/{quote(action_id, safe='')}/result")

    async def result_page(request: web.Request) -> web.Response:
        session = session_of(request)
        if session is None:
            raise login_redirect(request)
        action_id = request.match_info["action_id"]
        outcome = session.results.get(action_id)
        if outcome is None:
            if engine.approvals.get(action_id) is not None:
                raise web.HTTPSeeOther(f"/approvals/{quote(action_id, safe='')}")
            return message("No decision here", f"No decision on {action_id} was made in this session.", session, 404)
        return page("Decision", _result(action_id, session.actor, outcome), session)

    app = web.Application(middlewares=[api_auth])
    app[_ENGINE] = engine
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/api/actions", api_list)
    app.router.add_post(r"/api/actions/{action_id}/{verb:approve|deny}", api_decide)
    app.router.add_get("/static/approvals.css", static_css)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", _to_approvals)
    app.router.add_get("/approvals", list_page)
    app.router.add_get("/approvals/{action_id}", detail_page)
    app.router.add_get("/approvals/{action_id}/result", result_page)
    app.router.add_post(r"/approvals/{action_id}/{verb:approve|deny}", decide_page)
    return app


async def _to_approvals(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/approvals")


def _safe_next(value: str | None) -> str:
    """Only local approval pages: never an open redirect (``//evil``, ``/\\evil``, ``https://``)."""
    if value and value.startswith("/approvals") and "\\" not in value and value.isprintable():
        return value
    return "/approvals"


# ---------------------------------------------------------------------- page fragments
def _pending_row(p: PendingApproval, busy: tuple[str, bool] | None) -> _Html:
    link = f"/approvals/{quote(p.action_id, safe='')}"
    state = f' <span class="notice">({_e(_Decided(*busy))})</span>' if busy else ""
    inc = p.incident
    return _Html(
        f'<tr><td><a href="{_e(link)}"><code>{_e(p.action)}</code></a>{state}</td>'
        f"<td><code>{_e(p.target)}</code></td>"
        f"<td><code>{_e(inc.id)}</code> {_e(inc.rule_name)}</td>"
        f'<td class="severity severity-{_e(inc.severity)}">{_e(inc.severity)}</td>'
        f"<td>{inc.risk_score:.0f}</td><td><time>{_e(_time(p.created_at))}</time></td>"
        f"<td><time>{_e(_time(p.expires_at))}</time></td></tr>")


async def _plan_of(engine: Engine, pending: PendingApproval, now: datetime) -> dict[str, Any]:
    """What the action would send now (the action's redacted ``plan``), computed like dispatch does."""
    action = engine.actions.get(pending.action)
    if action is None:
        return {"error": f"action {pending.action} is no longer registered"}
    try:
        params = action.check_parameters(pending.params)
        ctx = ActionContext(params=params, client=engine.client, connections=engine.connections, now=now,
                            incident=pending.incident, credentials=engine.credentials)
        return await asyncio.wait_for(action.plan(ctx), _PLAN_TIMEOUT_S)
    except (ActionError, ConfigError, TimeoutError) as exc:
        return {"error": f"plan unavailable: {type(exc).__name__}: {exc}"}


def _plan_html(plan: Mapping[str, Any]) -> _Html:
    parts: list[str] = []
    if "error" in plan:
        parts.append(f'<p class="error">{_e(plan["error"])}</p>')
    for i, req in enumerate(plan.get("requests", []), 1):
        body = {k: v for k, v in req.items() if k not in ("method", "url", "auth")}
        parts.append(
            f'<div class="request"><h3>Request {i}</h3>'
            f'<p><code class="method">{_e(req.get("method", ""))}</code> <code class="url">{_e(req.get("url", ""))}</code>'
            + (f' — auth <code>{_e(req["auth"])}</code>' if req.get("auth") else "") + "</p>"
            + (f"<pre>{_e(json.dumps(body, indent=2, sort_keys=True, default=str))}</pre>" if body else "")
            + "</div>")
    if not plan.get("requests") and "error" not in plan:
        parts.append("<p>No request.</p>")
    extra = {k: v for k, v in plan.items() if k not in ("requests", "error")}
    if extra:
        parts.append(f"<pre>{_e(json.dumps(extra, indent=2, sort_keys=True, default=str))}</pre>")
    return _Html("\n".join(parts))


def _detail(p: PendingApproval, plan: Mapping[str, Any], *, notice: _Html, buttons: _Html) -> _Html:
    inc = p.incident
    entities = msgspec.structs.asdict(inc.entities)
    rows = [f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in entities.items() if v is not None]
    return _render(
        "detail", action=p.action, target=p.target, notice=notice, buttons=buttons, playbook=p.playbook,
        step=p.step + 1, mode=p.mode, reason=p.reason or "—", created_at=_time(p.created_at),
        expires_at=_time(p.expires_at), incident_id=inc.id, revision=inc.revision, status=inc.status,
        rule_id=inc.rule_id, rule_name=inc.rule_name, severity=inc.severity, risk_score=f"{inc.risk_score:.1f}",
        first_seen=_time(inc.first_seen), last_seen=_time(inc.last_seen), summary=inc.summary or "—",
        finding_count=inc.finding_count, finding_ids=_join(inc.finding_ids) or "—",
        categories=_join(inc.categories) or "—", rule_ids=_join(inc.rule_ids) or "—",
        atlas=_join(inc.atlas) or "—", owasp=_join(inc.owasp),
        entities=_Html("\n".join(rows) or '<tr><td colspan="2">none</td></tr>'),
        params=json.dumps(p.params, sort_keys=True, default=str), plan=_plan_html(plan))


def _result(action_id: str, actor: str, outcome: _Outcome) -> _Html:
    verb = "Approved" if outcome.approve else "Denied"
    if outcome.records is None:
        status, text = "accepted", (f"{verb} by {actor}. The decision was submitted and is being applied; "
                                    "the outcome appears in the audit trail.")
    elif not outcome.records:
        status, text = "expired", f"Not applied: {outcome.error or 'nothing happened'}."
    else:
        last = outcome.records[-1]
        status = last.status
        text = f"{verb} by {actor}: {last.action} on {last.target} — {last.status}."
        if last.error:
            text += f" Error: {last.error}"
    records = _Html("")
    if outcome.records:
        rows = "\n".join(
            f'<tr class="record"><td>{_e(r.status)}</td><td>{_e(r.action)}</td><td><code>{_e(r.target)}</code></td>'
            f'<td class="actor">{_e(r.actor)}</td><td><time>{_e(_time(r.timestamp))}</time></td>'
            f"<td>{_e(r.response_status or '')}</td><td>{_e(r.reason or r.error or '')}</td></tr>"
            for r in outcome.records)
        records = _Html('<h2>Audit records</h2><table class="records"><thead><tr><th>Status</th><th>Action</th>'
                        "<th>Target</th><th>Actor</th><th>Time</th><th>HTTP</th><th>Detail</th></tr></thead>"
                        f"<tbody>{rows}</tbody></table>")
    return _render("result", heading=f"{verb}: {action_id}", outcome=status, message=text, records=records)


def server_ssl_context(cert_file: str, key_file: str, client_ca_file: str | None = None) -> ssl.SSLContext:
    """A server context for the listener: TLS 1.2+, ``cert_file`` (PEM chain) with ``key_file``;
    with ``client_ca_file``, client certificates signed by that CA are required.

    Raises :class:`ConfigError` naming the setting whose file cannot be used.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:  # never the key's content: only which file failed and why
        raise ConfigError(f"cannot load the certificate {cert_file} with the key {key_file}: {_why(exc)}",
                          key="playbooks.approvals_tls_cert_file") from exc
    if client_ca_file:
        try:
            context.load_verify_locations(cafile=client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the client CA: {_why(exc)}", file=client_ca_file,
                              key="playbooks.approvals_tls_client_ca_file") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _why(exc: OSError) -> str:
    return str(getattr(exc, "reason", None) or exc.strerror or type(exc).__name__)


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0, *,
                ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """Start ``app`` on ``host:port`` (https with ``ssl_context``); returns the runner
    (``await runner.cleanup()`` to stop)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    return runner
