"""Profile steps (start-up and haptic) as a table of small handlers keyed by ``op``.

Each handler does one op of :class:`~slouchd.sensors.profiles.Step` on a link's client, every
GATT call bounded in time (at least 1 s, else the step's ``timeout_s``); :class:`StepRunner`
picks the handler, sleeps the step's ``delay_s`` after it and turns failures into
:class:`StepFailed` (an ``optional`` step's failure is logged instead, unless the link is gone).
The ops and what they do are documented in docs/sensors.md ("[[startup]]: steps after connecting").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slouchd.sensors.ble.context import SourceContext
from slouchd.sensors.ble.errors import StepFailed, one_line
from slouchd.sensors.ble.link import Link
from slouchd.sensors.profiles import Step
from slouchd.timing import within

#: Answers of a subscribed control characteristic kept for ``wait_notify`` before dropping.
CONTROL_QUEUE_MAX = 64
#: Shortest time a step's GATT call is given, seconds.
MIN_CALL_TIMEOUT_S = 1.0

NotifyCallback = Callable[[Any, bytearray], None]


class StepRunner:
    """Runs profile steps on a link (start-up steps, haptic start and stop)."""

    def __init__(self, ctx: SourceContext) -> None:
        self.ctx = ctx

    async def run(self, link: Link, step: Step) -> None:
        """Run one step, then sleep its ``delay_s``.

        Raises:
            StepFailed: the step failed (and is not optional, or the link is gone).
        """
        try:
            await STEP_HANDLERS[step.op](self, link, step)
            if step.delay_s:
                await self.ctx.clock.sleep(step.delay_s)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as err:
            msg = f"{step.op} {step.uuid}: {err if isinstance(err, StepFailed) else one_line(err)}"
            if step.optional and not link.gone:
                self.ctx.note(f"step:{step.op}:{step.uuid}", f"optional step failed: {msg}")
                return
            raise StepFailed(msg) from err

    async def start_notify(self, link: Link, uuid: str, callback: NotifyCallback) -> None:
        """Turn on notifications of ``uuid`` (stopped again at teardown)."""
        bluez = {"use_start_notify": self.ctx.settings.bluez_start_notify}
        await within(self.ctx.clock, link.client.start_notify(uuid, callback, bluez=bluez),
                     self.ctx.settings.connect_timeout_s)
        link.subscribed.append(uuid)

    async def call(self, aw: Awaitable[Any], step: Step) -> Any:
        """Await one GATT call of ``step``, bounded in time."""
        return await within(self.ctx.clock, aw, max(step.timeout_s, MIN_CALL_TIMEOUT_S))


StepHandler = Callable[[StepRunner, Link, Step], Awaitable[None]]


def _starts_with_any(value: bytes, prefixes: list[bytes]) -> bool:
    return any(value.startswith(p) for p in prefixes)


async def _write(runner: StepRunner, link: Link, step: Step) -> None:
    """Write ``data`` to the characteristic."""
    await runner.call(link.client.write_gatt_char(step.uuid, step.data_bytes, response=step.response), step)


async def _read(runner: StepRunner, link: Link, step: Step) -> None:
    """Read the characteristic; with ``expect``, it must start with one of those prefixes."""
    value = bytes(await runner.call(link.client.read_gatt_char(step.uuid), step))
    if step.expect and not _starts_with_any(value, step.expect_bytes):
        raise StepFailed(f"read {value.hex(' ')}, expected {' or '.join(step.expect)}")
    runner.ctx.log.debug("%s: read %s = %s", runner.ctx.who(), step.uuid, value.hex(" "))


async def _patch(runner: StepRunner, link: Link, step: Step) -> None:
    """Read, put ``data`` at ``offset``, write back only if that changes it (settings in flash)."""
    value = bytes(await runner.call(link.client.read_gatt_char(step.uuid), step))
    data, off = step.data_bytes, step.offset
    if len(value) < off + len(data):
        raise StepFailed(f"read {len(value)} bytes, cannot patch bytes {off}..{off + len(data) - 1}")
    patched = value[:off] + data + value[off + len(data):]
    if patched != value:
        await runner.call(link.client.write_gatt_char(step.uuid, patched, response=step.response), step)


async def _subscribe(runner: StepRunner, link: Link, step: Step) -> None:
    """Turn on notifications of a control characteristic; answers queue for ``wait_notify``."""
    queue: asyncio.Queue[bytes] = asyncio.Queue(CONTROL_QUEUE_MAX)
    link.control[step.uuid] = queue

    def on_control(_char: Any, data: bytearray) -> None:
        if link.active:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(bytes(data))

    await runner.start_notify(link, step.uuid, on_control)


async def _wait_notify(runner: StepRunner, link: Link, step: Step) -> None:
    """Wait up to ``timeout_s`` for an answer of a subscribed characteristic starting with ``expect``."""
    queue = link.control.get(step.uuid)
    if queue is None:
        raise StepFailed("no earlier subscribe step for this characteristic")
    clock = runner.ctx.clock
    deadline = clock.monotonic() + step.timeout_s
    seen: list[str] = []
    while (left := deadline - clock.monotonic()) > 0:
        try:
            value = await within(clock, queue.get(), left)
        except TimeoutError:
            break
        if _starts_with_any(value, step.expect_bytes):
            return
        seen.append(value.hex(" "))
    got = f"; got {', '.join(seen[-3:])}" if seen else ""
    raise StepFailed(f"no answer starting {' or '.join(step.expect)} within {step.timeout_s:g} s{got}")


async def _wait(runner: StepRunner, link: Link, step: Step) -> None:
    """Nothing but the pause: the runner sleeps ``delay_s`` after every step."""


#: The handler of each op (the keys are exactly ``profiles.STEP_OPS``).
STEP_HANDLERS: Mapping[str, StepHandler] = {
    "write": _write,
    "read": _read,
    "patch": _patch,
    "subscribe": _subscribe,
    "wait_notify": _wait_notify,
    "wait": _wait,
}
