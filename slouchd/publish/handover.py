"""Config reload for the publisher: a new wearer list, or a new publisher taking over.

Each wearer is one :class:`~slouchd.publish.records.WearerRecord`, so a reload adds, removes or
carries over whole records.
"""

from __future__ import annotations

from slouchd.publish import homeassistant as ha_discovery
from slouchd.publish.core import PublishCore
from slouchd.publish.records import WearerRecord
from slouchd.publish.wearer import WearerInfo


def set_wearers(core: PublishCore, wearers: list[WearerInfo]) -> None:
    """Replace the wearer list: removed wearers' retained topics are emptied (discovery too),
    new or changed wearers get their discovery (re)published."""
    new = {w.name: w for w in wearers}
    for name in [n for n in core.records if n not in new]:
        record = core.records.pop(name)
        if core.ha.discovery:
            core.put_retained(ha_discovery.discovery_topic(core.ha.discovery_prefix, record.info), b"")
        for topic in core.topics.wearer_topics(name):
            core.put_retained(topic, b"")
    changed: list[WearerRecord] = []
    records: dict[str, WearerRecord] = {}
    for name, info in new.items():
        known = core.records.get(name)
        if known is None:
            known = WearerRecord(info)
            changed.append(known)
        elif known.info != info:
            known.info = info
            changed.append(known)
        records[name] = known
    core.records = records
    for record in changed:
        # Written after the clears: a renamed wearer on the same sensor keeps its device.
        core.announce_wearer(record)


def take_over(core: PublishCore, old: PublishCore) -> None:
    """Carry ``old``'s queue, numbering, newest values and counters into ``core`` (a reload;
    see :meth:`slouchd.publish.mqtt.MqttPublisher.take_over`)."""
    core.events.extend(item.moved() for item in old.events)
    old.events.clear()
    if core.outbox is None:
        core.outbox = old.outbox  # the same journal goes on
    old.outbox = None
    core.seq.update(old.seq)
    for name, record in core.records.items():
        previous = old.records.get(name)
        if previous is not None:
            record.carry_from(previous)
    core.counts.add(old.counts)


def retire(core: PublishCore, *, clear_discovery: bool, clear_topics: bool) -> None:
    """Queue the clean-up of what ``core``'s publisher leaves behind on its broker (a reload)."""
    for record in core.records.values():
        if clear_discovery and core.ha.discovery:
            core.put_retained(ha_discovery.discovery_topic(core.ha.discovery_prefix, record.info), b"")
        if clear_topics:
            for topic in core.topics.wearer_topics(record.name):
                core.put_retained(topic, b"")
    if clear_topics:
        for record in core.records.values():
            record.forget_values()
