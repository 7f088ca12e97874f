from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from koinonia.kit.schemas import In, Out, Title, not_null

# Must equal koinonia.models.template.TEMPLATE_CATEGORIES (a test holds them together): mypy and
# OpenAPI need the values spelled out.
Category = Literal["service_reminder", "event", "prayer", "thank_you", "welcome", "offering"]
Content = Annotated[str, StringConstraints(min_length=1, max_length=1600)]


class TemplateIn(In):
    name: Title
    content: Content = Field(
        description="Up to 1,600 characters; merge fields allowed. With the church name filled "
        "in and names left empty it must fit the church's provider (Twilio: 1,600 characters; "
        "Telnyx: 10 parts), else 422 on `content`; the full check runs when it is sent."
    )
    category: Category


class TemplatePatch(In):
    name: Title | None = None
    content: Content | None = None
    category: Category | None = None

    _not_null = not_null("name", "content", "category")


class TemplateOut(Out):
    id: int
    name: str
    content: str
    category: str
    usage_count: int = Field(description="Messages sent from this template.")
    created_at: datetime
