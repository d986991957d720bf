from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter, create_model

from shared.events import PAYLOAD_MODELS, Envelope


def _event_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of one pushed event, one of the eleven types told apart by ``type``
    (what ERPs' client generators read), and the component schemas it refers to."""
    variants: list[Any] = []
    for event_type, model in PAYLOAD_MODELS.items():
        fields: dict[str, Any] = {
            "type": (Literal.__getitem__(event_type), ...),
            "payload": (model, ...),
        }
        variants.append(create_model(f"{model.__name__}Event", __base__=Envelope, **fields))
    one_of: Any = Annotated[Union.__getitem__(tuple(variants)), Field(discriminator="type")]
    document = TypeAdapter(list[one_of]).json_schema(ref_template="#/components/schemas/{model}")
    return document["items"], document["$defs"]


EVENT_SCHEMA, EVENT_COMPONENTS = _event_schemas()


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
                        "items": EVENT_SCHEMA,
                    }
                },
            }
        }
    },
}
