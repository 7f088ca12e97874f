"""After-commit effects that services of every domain register (db.session.on_commit).

`church_changed(session, church_id)`: the unit of work writes the church's data, so once it
commits, every cached document of the church (`kit.cache`: the stats dashboards) misses, in every
process. Every service that writes church data calls it, for requests and jobs alike; a rollback
(of the transaction, or of the savepoint it was called in) drops it, so a failed write never
invalidates, and it never runs before the commit (a reader in between would cache the old data
under the new version).

It lives here, beside the unit of work, rather than in `kit/cache.py` (kit/ imports no `db`
module) or in a domain (every domain writes church data; none owns the others' writes).

Called several times for one church in one transaction (a reply through `enqueue`, a church
update that reschedules its recurring texts), it registers one invalidation: the registration
of an enclosing transaction or savepoint still open covers everything written inside it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import SessionTransaction

from koinonia.db.session import on_commit
from koinonia.kit.cache import invalidate_church

_KEY = "koinonia.church_changed"


def church_changed(session: AsyncSession, church_id: int) -> None:
    """Invalidate the church's cached documents once what `session` wrote so far commits;
    never if it rolls back. Call it after (or with) the write, inside a unit of work."""
    sync = session.sync_session
    current = sync.get_nested_transaction() or sync.get_transaction()
    registered: list[tuple[SessionTransaction, int]] = session.info.setdefault(_KEY, [])
    if current is not None:
        enclosing: SessionTransaction | None = current
        while enclosing is not None:
            if (enclosing, church_id) in registered:
                return
            enclosing = enclosing.parent
        registered.append((current, church_id))

    async def invalidate() -> None:
        await invalidate_church(church_id)

    on_commit(session, invalidate)
