"""The validated options of one consumer or collector (:class:`StageConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..endpoints import Endpoint
from ..request import monitor_request

__all__ = ["StageConfig"]


@dataclass
class StageConfig:
    """Options common to consumers and collectors, already validated."""

    kind: str  # "consumer" or "collector"
    stage_id: int
    input_channel: str
    output_channel: str | None = None
    status_channel: str | None = None
    control_channel: str | None = None
    server_queue_size: int = 0
    receiver_queue_size: int = -1
    accumulate_objects: int = -1
    accumulation_timeout: float = 1.0
    processor_file: str | None = None
    processor_class: str | None = None
    processor_args: dict = field(default_factory=dict)
    oid_field: str = "uniqueId"
    oid_offset: int = 0
    field_request: str | None = None
    skip_initial_updates: int = 1
    distributor_plugin: str = "pydistributor"
    distributor_group: str | None = None
    distributor_set: str | None = None
    distributor_trigger: str | None = None
    distributor_updates: int | None = None
    n_distributor_sets: int = 1
    n_consumers: int = 1
    metadata_channels: list[Endpoint] = field(default_factory=list)
    runtime: float = 0.0
    report_period: float = 0.0
    report_stats: tuple = ("all",)
    report_format: str = "text"
    #: Start the stage again with the same id and options if it dies (the parent does).
    restart_failed: bool = False
    #: EPICS access security file that restricts puts on the control channel.
    access_security_file: str | None = None
    #: Times this stage was started again, and the back-off before this start (s).
    restart_count: int = 0
    restart_backoff: float = 0.0

    @property
    def distributor(self) -> str | None:
        """The distributor plugin the monitor request asks for, or None without one."""
        used = (
            self.distributor_group,
            self.distributor_set,
            self.distributor_trigger,
            self.distributor_updates,
        )
        if any(v is not None and v != "" for v in used[:3]) or (used[3] or 0) > 0:
            return self.distributor_plugin
        return None

    def monitor_request(self, channel: str | None = None) -> str:
        """The monitor request for this stage's input channel(s).

        With the distributor and no ``distributor_group``, a request for ``channel``
        names its group after the channel: the plugin keeps one table of groups for
        the whole server process (pvaccess's pydistributor and pvDatabase's
        distributor alike), so consumers of two channels of one server in the
        plugin's default group would share one rotation, and each channel's frames
        that fell to a consumer of the other channel would reach no one.
        """
        group = self.distributor_group
        if not group and channel and self.distributor:
            group = channel
        return monitor_request(
            server_queue_size=self.server_queue_size,
            distributor_plugin=self.distributor_plugin,
            group=group,
            set_name=self.distributor_set,
            trigger=self.distributor_trigger,
            updates=self.distributor_updates,
            field_request=self.field_request,
            oid_field=self.oid_field,
        )
