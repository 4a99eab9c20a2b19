"""The gateway's counters (in every wearer's state) and the SIGUSR1 health line."""

from __future__ import annotations

import asyncio
from typing import Any

from slouchd.daemon.wearer import WearerRuntime
from slouchd.publish.mqtt import MqttPublisher
from slouchd.sdnotify import Notifier


def gateway_counters(pub: MqttPublisher | None, notifier: Notifier) -> dict[str, Any]:
    """The gateway's own counters, shared by every wearer's diagnostics: ``gateway`` (MQTT
    reconnects, alerts and reminders sent, commands refused, payloads dropped unread, outbox,
    sd_notify messages dropped) and ``gateway_drops``, the total refused or dropped."""
    counts = {} if pub is None else pub.counters()
    gateway = {
        "mqtt_reconnects": counts.get("mqtt_reconnects", 0),
        "alerts_sent": counts.get("mqtt_alerts", 0),
        "reminders_sent": counts.get("mqtt_reminders", 0),
        "commands_refused": counts.get("mqtt_commands_refused", 0),
        "payloads_dropped": counts.get("mqtt_payloads_dropped", 0),
        "outbox": counts.get("mqtt_outbox", 0),
        "notify_dropped": getattr(notifier, "dropped", 0),
    }
    drops = gateway["commands_refused"] + gateway["payloads_dropped"] + gateway["notify_dropped"]
    return {"gateway": gateway, "gateway_drops": drops}


def health_line(pub: MqttPublisher | None, notifier: Notifier, wearers: list[WearerRuntime],
                uptime_s: float) -> str:
    """One line of internals for leak hunting (``kill -USR1 <pid>`` logs it): asyncio tasks,
    queues, counters. ``bench/soak.py`` reads it to check that nothing grows."""
    background = sum(rt.background_tasks for rt in wearers)
    return (f"health: uptime_s={uptime_s:.0f} "
            f"tasks={len(asyncio.all_tasks())} wearers={len(wearers)} "
            f"streaming={sum(1 for rt in wearers if rt.streaming)} "
            f"background_tasks={background} "
            f"mqtt_queue={0 if pub is None else pub.queue_depth} "
            f"mqtt_published={0 if pub is None else pub.published} "
            f"mqtt_dropped={0 if pub is None else pub.dropped} "
            f"states_published={0 if pub is None else pub.state_published} "
            f"alerts={sum(rt.alerts for rt in wearers)} "
            f"restarts={sum(rt.restarts for rt in wearers)} "
            f"notify_dropped={getattr(notifier, 'dropped', 0)} "
            + ("" if pub is None else " ".join(f"{k}={v}" for k, v in pub.counters().items()
                                               if k not in ("mqtt_published", "mqtt_dropped"))))
