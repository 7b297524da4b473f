"""Building the monitor request string from the queue and distributor options."""

from __future__ import annotations

__all__ = ["monitor_request"]


def monitor_request(
    server_queue_size: int = 0,
    distributor_plugin: str = "pydistributor",
    group: str | None = None,
    set_name: str | None = None,
    trigger: str | None = None,
    updates: int | None = None,
    field_request: str | None = None,
    oid_field: str = "uniqueId",
) -> str:
    """Return ``record[queueSize=N]field(...)`` with only the parts that were given.

    The distributor part ``field(_[plugin=group:G;set:S;trigger:T;updates:U])`` is
    used when any distributor option is set; it replaces ``--field-request`` (the
    plugin needs the whole structure). A field request always includes the object id
    field, so missed-frame counting keeps working.
    """
    parts = []
    if server_queue_size and server_queue_size > 0:
        parts.append(f"record[queueSize={int(server_queue_size)}]")
    dist = []
    if group:
        dist.append(f"group:{group}")
    if set_name:
        dist.append(f"set:{set_name}")
    if trigger:
        dist.append(f"trigger:{trigger}")
    if updates is not None and updates > 0:
        dist.append(f"updates:{int(updates)}")
    if dist:
        parts.append(f"field(_[{distributor_plugin}={';'.join(dist)}])")
    elif field_request:
        parts.append(_field_part(field_request, oid_field))
    else:
        parts.append("field()")
    return "".join(parts)


def _field_part(field_request: str, oid_field: str) -> str:
    text = field_request.strip()
    if text.startswith("field(") and text.endswith(")"):
        text = text[len("field(") : -1]
    fields = [f.strip() for f in text.split(",") if f.strip()]
    if oid_field and oid_field not in fields:
        fields.append(oid_field)
    return f"field({','.join(fields)})"
