"""Inbound texts (SPEC §4.3–4.4): what happens when someone texts a church's number.

`handle_inbound_text` is the entry point the provider webhooks call once a text's signature is
verified. It runs inside the webhook's request transaction, which commits before the provider
is answered 200, so everything it writes (the stored text, consent changes, the texts it
enqueues) is durable before the text is acknowledged; any exception rolls all of it back and
the provider retries. Once it commits, the church's cached documents miss
(`db.effects.church_changed`: a consent change, a stored text, a text enqueued). It runs a
constant number of statements: 1 for an unknown church number, 2-3 for an unknown sender or a
keyword, 3-4 (+ a savepoint) for a chat text.

In order:
1. The church is found by the number the text was sent to; unknown number → logged, ignored.
2. The sender is found by phone within that church. A number that is no member gets the
   church's `unknown_sender_reply` (or the default) once per church-local day, a 'system' text
   to that number alone; no member is created. An unknown number texting STOP gets nothing,
   nor does a sender that is no valid phone number (a short code, an alphanumeric sender).
3. Keywords (keywords.py) before anything else: STOP opts the member out church-wide at once,
   START opts back in, HELP says who this is and how to stop. Each is answered with one
   'system' text, sent even to an opted-out member (carriers require the STOP confirmation).
   A keyword that changes consent is always confirmed; one that changes nothing (a repeated
   STOP, a webhook delivered twice) is answered at most once a day. Keywords are neither stored
   as chat nor relayed.
4. Anything else is chat: stored once (deduplicated on the provider's message id, even for two
   deliveries at the same moment), counted on the member's conversation (unread + 1, last
   message time; a closed conversation reopens, an archived one stays archived), and in
   `group_chat` mode relayed to every other opted-in member as "{first_name}: {text}" (a
   'relay' message: durable, tracked, rate-limited, held by quiet hours like any broadcast).
   A relay the month's quota cannot cover is skipped and logged; the text is still stored.

Conversation texts (relay, reply, system) are written final: the sender's name and the church
name are filled in here, and the dispatcher sends them verbatim (messages.service.VERBATIM_KINDS),
so braces a member types are never taken for merge fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.config import get_settings
from koinonia.conversations.keywords import Keyword, classify
from koinonia.conversations.repository import ConversationRepository, find_church_by_number
from koinonia.db.effects import church_changed
from koinonia.kit.logging import log
from koinonia.kit.phones import PhoneError, normalize_phone
from koinonia.kit.schemas import is_canonical_timezone
from koinonia.kit.segments import render
from koinonia.messages import limits
from koinonia.messages.repository import Direct
from koinonia.messages.service import Outgoing, enqueue, enqueue_within_quota, plan_texts_of
from koinonia.models import Church, Member

# Longest text we hand a provider (Twilio refuses more than 1,600 characters).
MAX_TEXT_CHARS = 1600

DEFAULT_UNKNOWN_SENDER_REPLY = (
    "Thanks for your text! This number belongs to {church_name}. "
    "Please ask a church leader to add you."
)


def stop_confirmation(church: Church) -> str:
    return f"You're unsubscribed from {church.name} texts. Reply START to resubscribe."


def start_confirmation(church: Church) -> str:
    return f"You're subscribed to {church.name} texts again. Reply STOP to unsubscribe."


def help_reply(church: Church) -> str:
    return f"{church.name} texts. Questions: {church.contact_email}. Reply STOP to unsubscribe."


def unknown_sender_reply(church: Church) -> str:
    """The church's own reply (which may use {church_name}) or the default."""
    template = church.unknown_sender_reply
    if template is None or not template.strip():
        template = DEFAULT_UNKNOWN_SENDER_REPLY
    return limits.clip(church.sms_provider, render(template, {"church_name": church.name}))


def relay_text(first_name: str, body: str, sms_provider: str) -> str:
    """ "{first_name}: {text}" with both taken literally (no merge fields), cut to what the
    provider accepts (a member's text cannot be refused, and up to 1,600 characters of it
    plus the name is more than Twilio takes, or Telnyx's 10 parts)."""
    return limits.clip(sms_provider, f"{first_name}: {body}")


class InboundResult(StrEnum):
    UNKNOWN_NUMBER = "unknown_number"  # sent to no church's number: logged, acknowledged
    UNKNOWN_SENDER = "unknown_sender"  # the sender is no member: auto-reply (once a day)
    KEYWORD = "keyword"  # STOP / START / HELP handled; not stored as chat
    STORED = "stored"  # stored in the member's conversation (and relayed in group_chat)
    DUPLICATE = "duplicate"  # this provider message id was stored before: nothing done


@dataclass(frozen=True, slots=True)
class InboundOutcome:
    outcome: InboundResult
    church_id: int | None = None
    member_id: int | None = None
    keyword: Keyword | None = None
    consent_changed: bool = False
    conversation_id: int | None = None
    conversation_message_id: int | None = None
    reply_message_id: int | None = None  # our 'system' text back to the sender, if any
    relay_message_id: int | None = None  # group_chat: the 'relay' to the other members
    relay_skipped: str | None = None  # why no relay was written: "quota", "empty"


_KEYWORD_CONSENT: dict[Keyword, str | None] = {
    Keyword.STOP: "opted_out",
    Keyword.START: "opted_in",
    Keyword.HELP: None,
}


async def handle_inbound_text(
    session: AsyncSession,
    *,
    provider: str,
    provider_message_id: str,
    from_number: str,
    to_number: str,
    body: str,
) -> InboundOutcome:
    """Handle one verified inbound text inside the caller's transaction (see the module doc).
    Never raises for an unknown number or sender; a database error propagates (→ retry)."""
    region = get_settings().default_region
    (to, _), (sender, sender_is_number) = _e164(to_number, region), _e164(from_number, region)
    found = await find_church_by_number(session, to, sender_phone=sender)
    event = {"provider": provider, "provider_message_id": provider_message_id}
    if found is None:
        log.warning("inbound_unknown_number", to=to, **event)
        return InboundOutcome(InboundResult.UNKNOWN_NUMBER)
    church: Church = found[0]
    member: Member | None = found[1]
    repo = ConversationRepository(session, church_id=church.id)
    tz = _local_timezone(church, event)
    keyword = classify(body)
    if member is None:
        return await _unknown_sender(
            session, repo, church, tz, sender, sender_is_number, keyword, event
        )
    if keyword is not None:
        return await _keyword(session, repo, church, tz, member, keyword, event)
    return await _chat(session, repo, church, member, body, provider_message_id, event)


def _local_timezone(church: Church, event: dict[str, str]) -> str:
    """The church's timezone for "once per local day", or UTC when it is not one we accept.

    The API and a CHECK keep bad names out; this is the last guard, because a name the
    database cannot convert to would fail the statement and so the webhook: the text would
    never be stored and a STOP never applied. A day counted in UTC is the lesser harm.
    """
    if is_canonical_timezone(church.timezone):
        return church.timezone
    log.warning("inbound_church_timezone_invalid", church_id=church.id, tz=church.timezone, **event)
    return "UTC"


def _e164(raw: str, region: str) -> tuple[str, bool]:
    """(the number in E.164, True), or (`raw` stripped, False) when it is no valid number.

    Providers send E.164 already; this only tidies odd formatting. A short code or an
    alphanumeric sender is kept as given (it matches no member and no church)."""
    try:
        return normalize_phone(raw, region), True
    except PhoneError:
        return raw.strip(), False


async def _send_system(
    session: AsyncSession, church: Church, content: str, direct: Direct, member_id: int | None
) -> int:
    # Never refused for quota (a carrier-mandated answer must not fail the webhook) and never
    # held for quiet hours (it answers the recipient's own text). It still counts as usage.
    created = await enqueue(
        session,
        Outgoing(
            church=church,
            plan_texts=None,
            content=content,
            kind="system",
            target_type="members",
            target_ids=[member_id] if member_id is not None else [],
            hold_for_quiet_hours=False,
            direct=direct,
        ),
    )
    return created.id


async def _unknown_sender(
    session: AsyncSession,
    repo: ConversationRepository,
    church: Church,
    tz: str,
    sender: str,
    sender_is_number: bool,
    keyword: Keyword | None,
    event: dict[str, str],
) -> InboundOutcome:
    reply_id = None
    # Only a valid number can be answered: a reply to a short code, an alphanumeric sender or
    # a malformed "number" is refused by the carrier (Twilio 21211) and would still be counted.
    if keyword is not Keyword.STOP and sender_is_number:
        recipient_id = await repo.claim_unknown_sender_reply(phone=sender, tz=tz)
        if recipient_id is not None:
            reply_id = await _send_system(
                session, church, unknown_sender_reply(church), Direct(recipient_id, sender), None
            )
    log.info(
        "inbound_unknown_sender",
        church_id=church.id,
        keyword=keyword,
        reply_message_id=reply_id,
        **event,
    )
    return InboundOutcome(
        InboundResult.UNKNOWN_SENDER,
        church_id=church.id,
        keyword=keyword,
        reply_message_id=reply_id,
    )


async def _keyword(
    session: AsyncSession,
    repo: ConversationRepository,
    church: Church,
    tz: str,
    member: Member,
    keyword: Keyword,
    event: dict[str, str],
) -> InboundOutcome:
    changed, first_today = await repo.apply_keyword(
        member_id=member.id,
        phone=member.phone,
        consent=_KEYWORD_CONSENT[keyword],
        reason=keyword.value,
        tz=tz,
    )
    if changed:
        church_changed(session, church.id)
    reply_id = None
    if changed or first_today:
        content = {
            Keyword.STOP: stop_confirmation,
            Keyword.START: start_confirmation,
            Keyword.HELP: help_reply,
        }[keyword](church)
        reply_id = await _send_system(
            session, church, content, Direct(member.id, member.phone), member.id
        )
    log.info(
        "inbound_keyword",
        church_id=church.id,
        member_id=member.id,
        keyword=keyword,
        consent_changed=changed,
        reply_message_id=reply_id,
        **event,
    )
    return InboundOutcome(
        InboundResult.KEYWORD,
        church_id=church.id,
        member_id=member.id,
        keyword=keyword,
        consent_changed=changed,
        reply_message_id=reply_id,
    )


async def _chat(
    session: AsyncSession,
    repo: ConversationRepository,
    church: Church,
    member: Member,
    body: str,
    provider_message_id: str,
    event: dict[str, str],
) -> InboundOutcome:
    await repo.ensure_conversation(member.id)
    stored = await repo.store_inbound(
        member_id=member.id, body=body, provider_message_id=provider_message_id
    )
    if stored is None:
        log.info("inbound_duplicate", church_id=church.id, member_id=member.id, **event)
        return InboundOutcome(InboundResult.DUPLICATE, church_id=church.id, member_id=member.id)
    text_id, conversation_id = stored
    church_changed(session, church.id)
    relay_id, skipped = None, None
    if church.conversation_mode == "group_chat":
        if body.strip():
            relay_id = await _relay(session, church, member, body, conversation_id, event)
            skipped = "quota" if relay_id is None else None
        else:
            skipped = "empty"  # e.g. a picture-only MMS: stored, nothing to relay
    log.info(
        "inbound_stored",
        church_id=church.id,
        member_id=member.id,
        conversation_id=conversation_id,
        relay_message_id=relay_id,
        relay_skipped=skipped,
        **event,
    )
    return InboundOutcome(
        InboundResult.STORED,
        church_id=church.id,
        member_id=member.id,
        conversation_id=conversation_id,
        conversation_message_id=text_id,
        relay_message_id=relay_id,
        relay_skipped=skipped,
    )


async def _relay(
    session: AsyncSession,
    church: Church,
    member: Member,
    body: str,
    conversation_id: int,
    event: dict[str, str],
) -> int | None:
    """The relay to every other opted-in member; over the month's quota only the relay rolls
    back, logged as `relay_skipped_quota` (the member's text stays stored and acknowledged)."""
    created = await enqueue_within_quota(
        session,
        Outgoing(
            church=church,
            plan_texts=plan_texts_of(church),
            content=relay_text(member.first_name, body, church.sms_provider),
            kind="relay",
            target_type="all",
            exclude_member_id=member.id,
            conversation_id=conversation_id,
        ),
        event={"church_id": church.id, **event},
    )
    return None if created is None else created.id
