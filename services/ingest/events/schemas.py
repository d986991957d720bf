from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from shared.events import EVENT_TYPES


class PushAccepted(BaseModel):
    accepted: int = Field(description="Events stored for relay (new, or a higher version).")
    duplicates: int = Field(description="Events already known with the same or a higher version.")


class OutboxStatus(BaseModel):
    pending: int = Field(description="This tenant's accepted events not yet on Kafka.")


PUSH_REQUEST_SCHEMA: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["events"],
                "properties": {
                    "events": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 5000,
                        "items": {
                            "type": "object",
                            "required": ["event_id", "type", "source", "occurred_at", "payload"],
                            "properties": {
                                "event_id": {"type": "string"},
                                "type": {
                                    "type": "string",
                                    "enum": list(EVENT_TYPES),
                                },
                                "version": {"type": "integer", "minimum": 1, "default": 1},
                                "source": {
                                    "type": "object",
                                    "required": ["platform", "store_id", "marketplace"],
                                    "properties": {
                                        "platform": {"type": "string"},
                                        "store_id": {"type": "string"},
                                        "marketplace": {"type": "string", "pattern": "^[A-Z]{2}$"},
                                    },
                                },
                                "occurred_at": {"type": "string", "format": "date-time"},
                                "payload": {
                                    "type": "object",
                                    "description": "Fields by type, as in CONTRACT §3.",
                                },
                            },
                        },
                    }
                },
            }
        }
    },
}
