"""The demo church `make run` seeds into an empty database, so there is something to look at."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth.security import hash_password
from koinonia.models import Admin, Branch, Church, Group, GroupMember, Member, Template

DEMO_EMAIL = "admin@demo.church"
DEMO_CO_ADMIN = "pastor@demo.church"
DEMO_PASSWORD = "koinonia-demo"
DEMO_NUMBER = "+15550100100"

FIRST = [
    "John",
    "Mary",
    "José",
    "Zoë",
    "Grace",
    "Peter",
    "Ruth",
    "David",
    "Esther",
    "Samuel",
    "Naomi",
    "Paul",
    "Lydia",
    "Timothy",
    "Anna",
    "Mark",
    "Martha",
    "Luke",
    "Chloé",
    "Andrés",
]
LAST = [
    "Smith",
    "Johnson",
    "García",
    "Brown",
    "Okafor",
    "Nguyen",
    "Müller",
    "Williams",
    "Kim",
    "Jones",
    "Davis",
    "Martínez",
    "Lee",
    "Wilson",
    "Anderson",
    "Thomas",
    "Moore",
    "Taylor",
]


async def seed_demo(session: AsyncSession) -> bool:
    """Seed when no church exists; True if it seeded. Set-based: a handful of statements."""
    if (await session.execute(select(func.count()).select_from(Church))).scalar_one():
        return False
    rng = random.Random(7)
    church_id = (
        await session.execute(
            insert(Church)
            .values(
                name="Grace Community Church",
                contact_email="office@demo.church",
                timezone="America/New_York",
                sms_number=DEMO_NUMBER,
                sms_provider="sandbox",
                plan="growth",
                subscription_status="active",
                trial_ends_at=datetime.now(UTC) + timedelta(days=14),
            )
            .returning(Church.id)
        )
    ).scalar_one()
    pw = await hash_password(DEMO_PASSWORD)
    await session.execute(
        insert(Admin),
        [
            {
                "church_id": church_id,
                "email": DEMO_EMAIL,
                "password_hash": pw,
                "first_name": "Demo",
                "last_name": "Admin",
                "role": "PRIMARY",
            },
            {
                "church_id": church_id,
                "email": DEMO_CO_ADMIN,
                "password_hash": pw,
                "first_name": "Pat",
                "last_name": "Pastor",
                "role": "CO_ADMIN",
            },
        ],
    )
    branch_ids = list(
        (
            await session.execute(
                insert(Branch).returning(Branch.id),
                [
                    {"church_id": church_id, "name": n, "address": a}
                    for n, a in [
                        ("Downtown", "100 Main St"),
                        ("Northside", "42 Elm Ave"),
                        ("Riverside", "7 River Rd"),
                    ]
                ],
            )
        ).scalars()
    )
    group_specs = [
        ("Choir", 0),
        ("Youth", 0),
        ("Men's Fellowship", 1),
        ("Women's Bible Study", 1),
        ("Ushers", 2),
        ("Newcomers", 2),
    ]
    group_ids = list(
        (
            await session.execute(
                insert(Group).returning(Group.id),
                [
                    {
                        "church_id": church_id,
                        "branch_id": branch_ids[b],
                        "name": name,
                        "welcome_enabled": name == "Newcomers",
                        "welcome_text": "Welcome to {group_name}, {first_name|friend}!",
                    }
                    for name, b in group_specs
                ],
            )
        ).scalars()
    )
    members = [
        {
            "church_id": church_id,
            "first_name": rng.choice(FIRST),
            "last_name": rng.choice(LAST),
            "phone": f"+1202555{i:04d}",
            "consent": "opted_out" if i % 40 == 39 else "opted_in",
        }
        for i in range(200)
    ]
    member_ids = list(
        (await session.execute(insert(Member).returning(Member.id), members)).scalars()
    )
    memberships = {
        (group_ids[rng.randrange(len(group_ids))], m) for m in member_ids for _ in range(2)
    }
    await session.execute(
        insert(GroupMember),
        [{"group_id": g, "member_id": m, "church_id": church_id} for g, m in memberships],
    )
    await session.execute(
        insert(Template),
        [
            {
                "church_id": church_id,
                "name": "Sunday reminder",
                "category": "service_reminder",
                "content": "Hi {first_name|friend}, see you Sunday at 10am at {church_name}!",
            },
            {
                "church_id": church_id,
                "name": "Prayer night",
                "category": "prayer",
                "content": "Prayer night this Wednesday 7pm. All welcome.",
            },
        ],
    )
    return True
