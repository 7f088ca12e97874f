"""The fake carrier itself: its state (messages, counts, buckets, pending reports) and the
handlers behind every route, served by `FakeCarrier.app()`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import hmac
import json
import math
import random
import time
import urllib.parse
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from koinonia.kit.tokenbucket import TokenBucket
from koinonia.sms.signatures import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
    private_key_from_b64,
    telnyx_sign,
    twilio_signature,
)
from koinonia.sms.twilio import API_VERSION
from koinonia_sandbox.config import SandboxConfig, patched_config
from koinonia_sandbox.wire import (
    FORM_CONTENT_TYPE,
    Carrier,
    Refusal,
    SentMessage,
    Submission,
    iso,
    orjson_response,
    parse_telnyx,
    parse_twilio,
    telnyx_error,
    telnyx_message,
    twilio_error,
    twilio_resource,
    twilio_sid,
    utc_now,
)

log = structlog.get_logger("koinonia_sandbox")

MESSAGES_KEPT = 100_000  # for GET /sandbox/messages; the counts in /sandbox/stats are complete


@dataclass(frozen=True, slots=True)
class _Verdict:
    refusal: Refusal | None = None
    http_status: int = 200
    retry_after_s: int | None = None
    undelivered: bool = False


def _retry_after_header(verdict: _Verdict) -> dict[str, str] | None:
    return None if verdict.retry_after_s is None else {"Retry-After": str(verdict.retry_after_s)}


class FakeCarrier:
    """State and handlers of one sandbox; `app()` serves them."""

    def __init__(self, config: SandboxConfig) -> None:
        config.validate()
        self.config = config
        self._signing_key = private_key_from_b64(config.telnyx_signing_key_b64)
        self._rng = random.Random(config.seed)
        # Per from-number, for rate_limit_mps; rebuilt when the rate or the burst changes.
        self._bucket: TokenBucket | None = None
        # Bounded so a sandbox left running for days under `make run` keeps constant memory.
        self.messages: deque[SentMessage] = deque(maxlen=MESSAGES_KEPT)
        self.counts: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        # Delivery reports not yet due: (due on the loop clock, sequence, message, undelivered),
        # a heap served by one task, so an accepted text costs a heap entry rather than a task
        # and a timer of its own (10,000 texts a second would otherwise keep 10,000 tasks
        # sleeping per second of delivery delay).
        self._scheduled: list[tuple[float, int, SentMessage, bool]] = []
        self._sequence = 0
        self._scheduler: asyncio.Task[None] | None = None
        self._schedule_changed: asyncio.Event | None = None
        # Simulated latency, shared per millisecond: texts accepted within the same millisecond
        # wake together (never earlier than `latency_ms`), one timer per millisecond at most.
        self._delays: dict[float, list[asyncio.Future[None]]] = {}
        self._basic_auth: tuple[tuple[str, str], bytes] | None = None

    # --- application ----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(
            f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self._twilio_send
        )
        app.router.add_post("/v2/messages", self._telnyx_send)
        app.router.add_post("/sandbox/inbound", self._inbound)
        app.router.add_get("/sandbox/messages", self._list_messages)
        app.router.add_get("/sandbox/stats", self._stats)
        app.router.add_post("/sandbox/reset", self._reset)
        app.router.add_get("/sandbox/config", self._get_config)
        app.router.add_patch("/sandbox/config", self._patch_config)
        app.cleanup_ctx.append(self._lifetime)
        return app

    async def _lifetime(self, _app: web.Application) -> AsyncIterator[None]:
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        yield
        await self.cancel_callbacks()
        await self._http.close()
        self._http = None

    async def cancel_callbacks(self) -> None:
        self._scheduled.clear()
        tasks = list(self._tasks)
        if self._scheduler is not None:
            tasks.append(self._scheduler)
            self._scheduler = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_for_callbacks(self) -> None:
        """Until every pending delivery report has been delivered or given up."""
        while self._scheduled or self._tasks:
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            else:
                loop = asyncio.get_running_loop()
                await asyncio.sleep(max(0.001, self._scheduled[0][0] - loop.time()))

    def reset(self) -> None:
        """Forget messages, counts and rate-limit state; restart the RNG from the seed."""
        self.messages.clear()
        self.counts.clear()
        self._bucket = None
        self._rng = random.Random(self.config.seed)

    def stats(self) -> dict[str, Any]:
        rejected = {
            kind: self.counts[kind]
            for kind in (
                "unauthorized",
                "invalid",
                "rate_limited",
                "opted_out",
                "transient",
                "permanent",
            )
        }
        return {
            "accepted": self.counts["accepted"],
            "rejected": rejected,
            "rate_limited": self.counts["rate_limited"],
            "callbacks": {
                "delivered": self.counts["callbacks_delivered"],
                "failed": self.counts["callbacks_failed"],
                "pending": len(self._scheduled) + len(self._tasks),
            },
            "inbound": self.counts["inbound"],
        }

    # --- the decision every send goes through ---------------------------------------------

    async def _judge(self, from_: str, to: str) -> _Verdict:
        config = self.config
        if config.latency_ms > 0:
            await self._delay(config.latency_ms / 1000)
        # No await from here on: the bucket, the draws and the record happen as one step, so
        # the recorded acceptance times are exactly what the rate limit allowed.
        if config.rate_limit_mps is not None:
            if self._bucket is None:
                # A refusing bucket of `rate_limit_burst` tokens: its tolerance is the horizon.
                self._bucket = TokenBucket(config.rate_limit_mps, late_credit=0.0)
            tolerance = (config.rate_limit_burst - 1) * self._bucket.interval
            grant = self._bucket.take(from_, 1, time.monotonic(), tolerance)
            if not grant.granted:
                wait = grant.wait - tolerance
                # Retry-After is whole seconds in HTTP; never 0, which would invite a hot loop.
                return _Verdict("rate_limited", 429, retry_after_s=max(1, math.ceil(wait)))
        # Every send makes the same draws, so a seeded run is reproducible whatever the rates.
        transient, permanent, undelivered, which = (self._rng.random() for _ in range(4))
        if to in config.opted_out_numbers:
            return _Verdict("opted_out", 400)
        if transient < config.transient_failure_rate:
            return _Verdict("transient", 500 if which < 0.5 else 503)
        if permanent < config.permanent_failure_rate:
            return _Verdict("permanent", 400)
        return _Verdict(undelivered=undelivered < config.undelivered_rate)

    def _accept(self, carrier: Carrier, sms: Submission, *, undelivered: bool) -> SentMessage:
        message_id = twilio_sid() if carrier == "twilio" else str(uuid.uuid4())
        message = SentMessage(
            carrier, message_id, sms.to, sms.from_, sms.body, sms.callback, utc_now()
        )
        self.messages.append(message)
        self.counts["accepted"] += 1
        self._schedule_report(message, undelivered=undelivered)
        return message

    async def _delay(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        due = math.ceil((loop.time() + seconds) * 1000) / 1000
        waiter: asyncio.Future[None] = loop.create_future()
        waiting = self._delays.get(due)
        if waiting is None:
            self._delays[due] = [waiter]
            loop.call_at(due, self._end_delay, due)
        else:
            waiting.append(waiter)
        await waiter

    def _end_delay(self, due: float) -> None:
        for waiter in self._delays.pop(due, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _schedule_report(self, message: SentMessage, *, undelivered: bool) -> None:
        """The "sent" report half the delivery delay from now, then the final one."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.config.delivery_delay_ms / 2000
        self._sequence += 1
        earliest = self._scheduled[0][0] if self._scheduled else math.inf
        heapq.heappush(self._scheduled, (due, self._sequence, message, undelivered))
        if self._scheduler is None or self._scheduler.done():
            self._schedule_changed = asyncio.Event()
            self._scheduler = asyncio.create_task(self._run_schedule(self._schedule_changed))
        elif due < earliest and self._schedule_changed is not None:
            self._schedule_changed.set()  # the scheduler sleeps until a later moment

    async def _run_schedule(self, changed: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        scheduled = self._scheduled
        while scheduled:
            wait = scheduled[0][0] - loop.time()
            if wait > 0:
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), wait)
                continue
            _, _, message, undelivered = heapq.heappop(scheduled)
            self._spawn(self._report_delivery(message, undelivered=undelivered))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- Twilio send ----------------------------------------------------------------------

    async def _twilio_send(self, request: web.Request) -> web.Response:
        config = self.config
        if not self._twilio_authorized(request):
            self.counts["unauthorized"] += 1
            return twilio_error(
                20003, "Authenticate", 401, {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        form = await request.post()
        sms = parse_twilio({name: v for name, v in form.items() if isinstance(v, str)})
        if not isinstance(sms, Submission):
            self.counts["invalid"] += 1
            return twilio_error(*sms, 400)
        verdict = await self._judge(sms.from_, sms.to)
        if verdict.refusal is not None:
            self.counts[verdict.refusal] += 1
            code, text = {
                "rate_limited": (20429, "Too Many Requests"),
                "opted_out": (21610, "Attempt to send to unsubscribed recipient"),
                "transient": (
                    (20500, "Internal Server Error")
                    if verdict.http_status == 500
                    else (20503, "Service Unavailable")
                ),
                "permanent": (30006, "Landline or unreachable carrier"),
            }[verdict.refusal]
            return twilio_error(code, text, verdict.http_status, _retry_after_header(verdict))
        message = self._accept("twilio", sms, undelivered=verdict.undelivered)
        return orjson_response(twilio_resource(message, config.twilio_account_sid), 201)

    def _twilio_authorized(self, request: web.Request) -> bool:
        config = self.config
        credentials = (config.twilio_account_sid, config.twilio_auth_token)
        if self._basic_auth is None or self._basic_auth[0] != credentials:
            self._basic_auth = (credentials, aiohttp.encode_basic_auth(*credentials).encode())
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(
            request.match_info["account_sid"].encode(), config.twilio_account_sid.encode()
        ) and hmac.compare_digest(given.encode(), self._basic_auth[1])

    # --- Telnyx send ----------------------------------------------------------------------

    async def _telnyx_send(self, request: web.Request) -> web.Response:
        expected = f"Bearer {self.config.telnyx_api_key}".encode()
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            self.counts["unauthorized"] += 1
            return telnyx_error(
                "10009",
                "Authentication failed",
                "The required authentication headers were either invalid or not included.",
                401,
            )
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self.counts["invalid"] += 1
            return telnyx_error("10015", "Bad Request", "The body must be a JSON object.", 400)
        sms = parse_telnyx(payload)
        if not isinstance(sms, Submission):
            self.counts["invalid"] += 1
            return telnyx_error(*sms, 400)
        verdict = await self._judge(sms.from_, sms.to)
        if verdict.refusal is not None:
            self.counts[verdict.refusal] += 1
            code, title, detail = {
                "rate_limited": (
                    "10011",
                    "Too many requests",
                    "You have exceeded the maximum number of allowed requests.",
                ),
                "opted_out": (
                    "40300",
                    "Blocked due to STOP message",
                    f"Messages cannot be sent from '{sms.from_}' to '{sms.to}' due to an "
                    "existing block rule.",
                ),
                "transient": ("10007", "Unexpected error", "An unexpected error occurred."),
                "permanent": (
                    "40001",
                    "Not routable",
                    "The destination is a landline or a non-routable number.",
                ),
            }[verdict.refusal]
            return telnyx_error(
                code, title, detail, verdict.http_status, _retry_after_header(verdict)
            )
        message = self._accept("telnyx", sms, undelivered=verdict.undelivered)
        return orjson_response({"data": telnyx_message(message)})

    # --- delivery reports -----------------------------------------------------------------

    async def _report_delivery(self, message: SentMessage, *, undelivered: bool) -> None:
        """From the moment the "sent" report is due (see `_schedule_report`)."""
        half_delay = self.config.delivery_delay_ms / 2000
        message.status = "sent"
        await self._post_report(message)
        await asyncio.sleep(half_delay)
        if message.carrier == "twilio":
            message.status = "undelivered" if undelivered else "delivered"
            message.error_code = "30003" if undelivered else None
        else:
            message.status = "delivery_failed" if undelivered else "delivered"
            message.error_code = "40008" if undelivered else None
        await self._post_report(message)

    async def _post_report(self, message: SentMessage) -> None:
        url = message.status_callback
        if not url:
            return
        if message.carrier == "twilio":
            params = {
                "AccountSid": self.config.twilio_account_sid,
                "ApiVersion": API_VERSION,
                "From": message.from_,
                "MessageSid": message.id,
                "MessageStatus": message.status,
                "SmsSid": message.id,
                "SmsStatus": message.status,
                "To": message.to,
            }
            if message.error_code:
                params["ErrorCode"] = message.error_code
            await self._post_with_retries(url, lambda _attempt: self._twilio_request(url, params))
        else:
            event_type = "message.sent" if message.status == "sent" else "message.finalized"
            event_id = str(uuid.uuid4())
            occurred_at = iso(utc_now())

            def build(attempt: int) -> tuple[bytes, dict[str, str]]:
                event = {
                    "data": {
                        "event_type": event_type,
                        "id": event_id,
                        "occurred_at": occurred_at,
                        "payload": telnyx_message(message),
                        "record_type": "event",
                    },
                    "meta": {"attempt": attempt, "delivered_to": url},
                }
                return self._telnyx_request(event)

            await self._post_with_retries(url, build)

    def _twilio_request(self, url: str, params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        headers = {
            "Content-Type": FORM_CONTENT_TYPE,
            TWILIO_SIGNATURE_HEADER: twilio_signature(url, params, self.config.twilio_auth_token),
            "User-Agent": "TwilioProxy/1.1",
        }
        return urllib.parse.urlencode(params).encode(), headers

    def _telnyx_request(self, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        # Signed per attempt, as Telnyx does: the timestamp must be fresh on every retry.
        raw = json.dumps(event, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TELNYX_SIGNATURE_HEADER: telnyx_sign(self._signing_key, timestamp, raw),
            TELNYX_TIMESTAMP_HEADER: timestamp,
            "User-Agent": "telnyx-webhooks",
        }
        return raw, headers

    async def _post_with_retries(
        self, url: str, build: Callable[[int], tuple[bytes, dict[str, str]]]
    ) -> None:
        config = self.config
        delay = config.callback_retry_ms / 1000
        for attempt in range(1, config.callback_attempts + 1):
            body, headers = build(attempt)
            status = await self._post_once(url, body, headers)
            if status is not None and 200 <= status < 300:
                self.counts["callbacks_delivered"] += 1
                return
            if attempt < config.callback_attempts:
                await asyncio.sleep(delay)
                delay *= 2
        self.counts["callbacks_failed"] += 1
        log.warning("sandbox_callback_failed", url=url, attempts=config.callback_attempts)

    async def _post_once(self, url: str, body: bytes, headers: dict[str, str]) -> int | None:
        if self._http is None:
            return None
        timeout = aiohttp.ClientTimeout(total=self.config.callback_timeout_s)
        try:
            async with self._http.post(url, data=body, headers=headers, timeout=timeout) as r:
                await r.read()
                return r.status
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None

    # --- text in --------------------------------------------------------------------------

    async def _inbound(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return web.json_response({"error": "the body must be a JSON object"}, status=400)
        carrier = payload.get("provider")
        fields = {name: payload.get(name) for name in ("from", "to", "body")}
        provider_id = payload.get("provider_id")
        if carrier not in ("twilio", "telnyx"):
            return web.json_response({"error": "provider must be twilio or telnyx"}, status=400)
        bad = [name for name, value in fields.items() if not isinstance(value, str)]
        if bad or (provider_id is not None and not isinstance(provider_id, str)):
            return web.json_response(
                {"error": "from, to and body are required strings; provider_id a string"},
                status=400,
            )
        from_, to, body = (str(fields[name]) for name in ("from", "to", "body"))
        url = (
            self.config.twilio_inbound_url
            if carrier == "twilio"
            else self.config.telnyx_inbound_url
        )
        if not url:
            return web.json_response(
                {"error": f"{carrier}_inbound_url is not configured"}, status=409
            )
        if carrier == "twilio":
            message_id = provider_id or twilio_sid()
            raw, headers = self._twilio_request(
                url,
                {
                    "AccountSid": self.config.twilio_account_sid,
                    "ApiVersion": API_VERSION,
                    "Body": body,
                    "From": from_,
                    "MessageSid": message_id,
                    "NumMedia": "0",
                    "NumSegments": "1",
                    "SmsMessageSid": message_id,
                    "SmsSid": message_id,
                    "SmsStatus": "received",
                    "To": to,
                },
            )
        else:
            message_id = provider_id or str(uuid.uuid4())
            received_at = iso(utc_now())
            raw, headers = self._telnyx_request(
                {
                    "data": {
                        "event_type": "message.received",
                        "id": str(uuid.uuid4()),
                        "occurred_at": received_at,
                        "payload": {
                            "id": message_id,
                            "record_type": "message",
                            "direction": "inbound",
                            "type": "SMS",
                            "from": {"phone_number": from_, "carrier": "Sandbox"},
                            "to": [{"phone_number": to, "status": "webhook_delivered"}],
                            "text": body,
                            "received_at": received_at,
                            "parts": 1,
                            "errors": [],
                        },
                        "record_type": "event",
                    },
                    "meta": {"attempt": 1, "delivered_to": url},
                }
            )
        self.counts["inbound"] += 1
        answer = await self._post_for_answer(url, raw, headers)
        if isinstance(answer, str):
            return web.json_response(
                {"error": f"webhook unreachable: {answer}", "url": url}, status=502
            )
        status, content_type, text = answer
        return web.json_response(
            {
                "provider": carrier,
                "provider_id": message_id,
                "url": url,
                "status": status,
                "content_type": content_type,
                "body": text,
            }
        )

    async def _post_for_answer(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, str] | str:
        """The webhook's status, content type and body, or why it could not be reached."""
        if self._http is None:
            return "sandbox is stopping"
        timeout = aiohttp.ClientTimeout(total=self.config.callback_timeout_s)
        try:
            async with self._http.post(url, data=body, headers=headers, timeout=timeout) as r:
                text = (await r.read()).decode("utf-8", errors="replace")
                return r.status, r.content_type, text
        except TimeoutError:
            return "timed out"
        except (aiohttp.ClientError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"

    # --- inspection and control -----------------------------------------------------------

    async def _list_messages(self, request: web.Request) -> web.Response:
        to = request.query.get("to")
        from_ = request.query.get("from")
        selected = [
            message.as_json()
            for message in self.messages
            if (to is None or message.to == to) and (from_ is None or message.from_ == from_)
        ]
        return web.json_response({"count": len(selected), "messages": selected})

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _reset(self, _request: web.Request) -> web.Response:
        await self.cancel_callbacks()
        self.reset()
        return web.json_response(self.stats())

    async def _get_config(self, _request: web.Request) -> web.Response:
        return web.json_response(self.config.as_json())

    async def _patch_config(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
        except ValueError:
            changes = None
        if not isinstance(changes, dict):
            return web.json_response({"error": "the body must be a JSON object"}, status=400)
        try:
            self.update_config(changes)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.config.as_json())

    def update_config(self, changes: Mapping[str, Any]) -> None:
        """Apply knob changes in place (holders of the config see them); ValueError if bad."""
        updated = patched_config(self.config, changes)
        for f in dataclasses.fields(updated):
            setattr(self.config, f.name, getattr(updated, f.name))
        if "seed" in changes:
            self._rng = random.Random(self.config.seed)
        if {"rate_limit_mps", "rate_limit_burst"} & changes.keys():
            self._bucket = None
        if "telnyx_signing_key_b64" in changes:
            self._signing_key = private_key_from_b64(self.config.telnyx_signing_key_b64)
