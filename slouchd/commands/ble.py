"""``slouchd profiles | scan | decode | record``: the Bluetooth LE sensors from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from slouchd.cli import CliError
from slouchd.sensors.decoders import ProfileDecoder
from slouchd.sensors.profiles import Profile, get_profile, load_profile, load_profiles, match_profile
from slouchd.sensors.settings import BleSettings

#: Exit code when a payload does not decode (``decode``) or nothing was recorded (``record``).
EXIT_UNDECODABLE = 1
EXIT_NO_SAMPLES = 1
#: Exit code of ``scan`` and ``record`` when there is no Bluetooth to use (no system D-Bus, no
#: bluetoothd, no adapter, adapter off, access denied): sysexits' EX_UNAVAILABLE.
EXIT_NO_BLUETOOTH = 69

EXIT_CODES_HELP = ("Exit codes: 0 done, 1 no samples recorded, 2 usage or config error, "
                   "69 no Bluetooth (what is missing and the fix go to stderr).")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profiles", help="list firmware profiles, or validate a profile file",
                       description="List the firmware profiles, or validate one profile TOML file.")
    p.add_argument("file", nargs="?", help="a profile file to validate")
    _add_profiles_dir(p)
    p.set_defaults(func=run_profiles)

    p = sub.add_parser("scan", help="find BLE sensors nearby",
                       description="Scan for nearby sensors and show which profile each one matches. "
                                   "Exit codes: 0 done (also when nothing was found), 2 usage or "
                                   "config error, 69 no Bluetooth (what is missing and the fix go to "
                                   "stderr).")
    p.add_argument("--timeout", type=float, default=8.0, metavar="S", help="scan this long, seconds")
    p.add_argument("--all", action="store_true", help="also list devices no profile matches")
    p.add_argument("--config", metavar="FILE", help="slouchd.toml for the [ble] settings")
    _add_profiles_dir(p)
    p.set_defaults(func=run_scan)

    p = sub.add_parser(
        "decode", help="decode one captured notification or advertisement payload",
        description="Decode one payload (hex; spaces and colons allowed) with a profile and print one "
                    "JSON object per sample: ax ay az in g, gx gy gz in deg/s when the sensor has a gyro, "
                    "t in s when its protocol carries a clock (the sensor's own epoch). Exit 1 if "
                    "nothing decodes.")
    p.add_argument("--profile", required=True, help="profile name (see `slouchd profiles`)")
    p.add_argument("hex", nargs="+", help="payload bytes in hex")
    _add_profiles_dir(p)
    p.set_defaults(func=run_decode)

    p = sub.add_parser(
        "record", help="record a sensor to a replay CSV",
        description="Stream a sensor into the replay CSV format (t,ax,ay,az[,gx,gy,gz]; t in seconds "
                    "from the first sample). Runs until Ctrl-C, --duration or --samples, whichever "
                    "comes first; --duration counts from the start, also while the sensor is still "
                    "being looked for. A running sample count goes to stderr, and at the end how "
                    "many samples were written. " + EXIT_CODES_HELP)
    p.add_argument("--sensor", required=True, help="BLE address or advertised name")
    p.add_argument("--profile", default="", help='profile name; default: match by advertisement')
    p.add_argument("--duration", type=float, default=0.0, metavar="S",
                   help="stop after this many seconds from the start (default 0 = at Ctrl-C)")
    p.add_argument("--samples", type=int, default=0, metavar="N", help="stop after N samples (0 = no limit)")
    p.add_argument("--config", metavar="FILE", help="slouchd.toml for the [ble] settings")
    p.add_argument("out", help="CSV file to write")
    _add_profiles_dir(p)
    p.set_defaults(func=run_record)


def _add_profiles_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profiles-dir", metavar="DIR", default=None,
                   help="extra directory of profile files (default: [ble] profiles_dir)")


def _settings(args: argparse.Namespace) -> BleSettings:
    path = getattr(args, "config", None)
    if path:
        from slouchd.config import load_config

        settings = load_config(Path(path)).ble
    else:
        settings = BleSettings()
    return settings


def _profiles(args: argparse.Namespace, settings: BleSettings | None = None) -> dict[str, Profile]:
    extra = args.profiles_dir
    if extra is None:
        extra = settings.profiles_dir if settings else ""
    return load_profiles(extra or None)


# -- profiles -----------------------------------------------------------------------------------


def run_profiles(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.file:
        prof = load_profile(args.file)
        out.write(f"{args.file}: ok ({prof.name}: {prof.description or 'no description'})\n")
        return 0
    profiles = _profiles(args)
    width = max(len(n) for n in profiles)
    for name, prof in sorted(profiles.items()):
        what = ["passive" if prof.stream.passive else "connect", f"{prof.rate_hz:g} Hz",
                "acc+gyro" if prof.has_gyro else "acc", f"mount {prof.mount}"]
        if prof.haptic:
            what.append("haptic")
        if prof.battery:
            what.append("battery")
        out.write(f"{name:<{width}}  {prof.description}\n{'':<{width}}  {', '.join(what)}  [{prof.path}]\n")
    return 0


# -- decode -------------------------------------------------------------------------------------


def parse_payload(words: list[str]) -> bytes:
    # Separators people paste from scanners and logs: spaces, : , - _ . [ ] < >, 0x and \x prefixes.
    text = re.sub(r"[\s:,\-_.\[\]<>]|0x|\\x", "", "".join(words), flags=re.I)
    if not text or len(text) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", text):
        raise CliError(f"not hex bytes: {' '.join(words)!r}")
    return bytes.fromhex(text)


def _num(x: float) -> float:
    return round(float(x), 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def run_decode(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    profile = get_profile(_profiles(args), args.profile)
    payload = parse_payload(args.hex)
    dec = ProfileDecoder(profile)
    s = dec.feed(payload)
    for i in range(len(s)):
        row: dict[str, float] = {k: _num(v) for k, v in zip(("ax", "ay", "az"), s.acc_g[i], strict=True)}
        if s.gyro_dps is not None:
            row.update({k: _num(v) for k, v in zip(("gx", "gy", "gz"), s.gyro_dps[i], strict=True)})
        if s.t_sensor_s is not None:
            row["t"] = round(float(s.t_sensor_s[i]), 9)
        out.write(json.dumps(row) + "\n")
    for d in s.drops:
        err.write(f"slouchd decode: {d.reason}: {d.detail}\n")
    if len(s):
        return 0
    if not s.drops:
        pending = dec.pending()
        if pending:
            err.write(f"slouchd decode: short: incomplete frame ({pending} bytes waiting for the rest)\n")
        else:
            err.write("slouchd decode: no samples in the payload (only non-sample frames)\n")
    return EXIT_UNDECODABLE


# -- scan ---------------------------------------------------------------------------------------


def _no_adapter(error: BaseException) -> str:
    from slouchd.sensors.ble import bluetooth_missing

    missing = bluetooth_missing(error)
    if missing is not None:  # the same diagnosis the daemon logs: what is missing, and the fix
        return f"no Bluetooth: {missing.what}; {missing.fix}"
    return (f"no usable Bluetooth adapter ({type(error).__name__}: {error}). Is bluetoothd running "
            "and an adapter present (`bluetoothctl list`, `rfkill list`)?")


def run_scan(args: argparse.Namespace, scanner_cls: Any = None, out: TextIO | None = None,
             err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    settings = _settings(args)
    profiles = _profiles(args, settings)
    if scanner_cls is None:
        from bleak import BleakScanner as scanner_cls
    kwargs: dict[str, Any] = {"return_adv": True}
    if settings.adapter:
        kwargs["bluez"] = {"adapter": settings.adapter}
    try:
        found = asyncio.run(scanner_cls.discover(timeout=args.timeout, **kwargs))
    except Exception as error:  # bleak raises BleakError/BleakDBusError, dbus-fast OSErrors
        if not isinstance(error, TimeoutError | OSError) and not type(error).__module__.startswith(
                ("bleak", "dbus")):
            raise
        err.write(f"slouchd scan: {_no_adapter(error)}\n")
        return EXIT_NO_BLUETOOTH
    rows = []
    for device, adv in found.values():
        name = adv.local_name or device.name or ""
        prof = match_profile(profiles.values(), name, adv.service_uuids or [], adv.manufacturer_data or {})
        if prof is None and not args.all:
            continue
        rows.append((adv.rssi if adv.rssi is not None else -999, device.address, name,
                     prof.name if prof else "-"))
    if not rows:
        out.write(f"no sensors found in {args.timeout:g} s"
                  f"{'' if args.all else ' (--all lists every device)'}\n")
        return 0
    out.write(f"{'RSSI':>5}  {'ADDRESS':<17}  {'PROFILE':<12}  NAME\n")
    for rssi, address, name, prof_name in sorted(rows, reverse=True):
        out.write(f"{rssi:>5}  {address:<17}  {prof_name:<12}  {name}\n")
    return 0


# -- record -------------------------------------------------------------------------------------


class NoBluetooth(Exception):
    """There is no Bluetooth to record from; ``str()`` says what is missing and the fix."""


async def probe_bluetooth(scanner_cls: Any, settings: BleSettings) -> None:
    """Start and stop a scan once, so that missing Bluetooth is an error now, not a silent wait.

    The sensor source itself retries for ever when Bluetooth is missing (right for the daemon:
    BlueZ may come back); a command run by hand must say so at once instead.

    Raises:
        NoBluetooth: no system D-Bus, no bluetoothd, no adapter, adapter off, access denied.
    """
    from slouchd.sensors.ble import bluetooth_missing

    kwargs: dict[str, Any] = {"bluez": {"adapter": settings.adapter}} if settings.adapter else {}
    scanner = scanner_cls(**kwargs)
    try:
        await scanner.start()
    except Exception as error:
        if bluetooth_missing(error, settings.adapter) is not None:
            raise NoBluetooth(_no_adapter(error)) from None
        return  # anything else (busy, not ready) is the source's to retry
    await scanner.stop()


def run_record(args: argparse.Namespace, source_factory: Any = None, err: TextIO | None = None,
               scanner_cls: Any = None) -> int:
    """``slouchd record``; ``source_factory``/``scanner_cls`` replace bleak in tests.

    Without a ``source_factory`` the sensor is a :class:`BleSensorSource` and Bluetooth is probed
    first (with ``scanner_cls``, default bleak's); with one, only when ``scanner_cls`` is given.
    """
    err = err or sys.stderr
    settings = _settings(args)
    profiles = _profiles(args, settings)
    profile = get_profile(profiles, args.profile) if args.profile else None
    out_path = Path(args.out)
    if not out_path.parent.is_dir():
        raise CliError(f"{out_path.parent}: no such directory")
    if args.duration < 0 or args.samples < 0:
        raise CliError("--duration and --samples must be >= 0")
    if source_factory is None:
        from slouchd.sensors.ble import BleSensorSource

        if scanner_cls is None:
            from bleak import BleakScanner as scanner_cls

        def source_factory() -> Any:
            return BleSensorSource(args.sensor, profile, settings, profiles=profiles)

    header = None if profile is None else csv_header(profile.has_gyro)
    progress = [0]
    started = time.monotonic()

    async def record() -> None:
        if scanner_cls is not None:
            await probe_bluetooth(scanner_cls, settings)
        await record_csv(source_factory(), out_path, err, args.duration, args.samples, progress, header)

    try:
        asyncio.run(record())
        how = "written to"
    except NoBluetooth as error:
        err.write(f"slouchd record: {error}\n")
        return EXIT_NO_BLUETOOTH
    except KeyboardInterrupt:
        how = "stopped with Ctrl-C; kept in"
    took = time.monotonic() - started
    count = progress[0]
    if count == 0:
        kept = out_path.is_file() and out_path.stat().st_size > 0
        if out_path.is_file() and not kept:
            out_path.unlink()  # no header known and no rows: no empty file left behind
        err.write(f"\nslouchd record: no samples from {args.sensor} in {took:.0f} s"
                  f"{f' ({out_path} holds only the header)' if kept else ''}. Is it switched on, in "
                  f"range and not connected to anything else? `slouchd scan` lists what is nearby.\n")
        return EXIT_NO_SAMPLES
    err.write(f"\n{count} samples in {took:.0f} s {how} {out_path}\n")
    return 0


def csv_header(gyro: bool) -> str:
    """The replay CSV header: t (s), acceleration (g) and, with a gyro, angular rate (deg/s)."""
    return "t,ax,ay,az,gx,gy,gz\n" if gyro else "t,ax,ay,az\n"


async def record_csv(source: Any, path: Path, err: TextIO, duration_s: float = 0.0,
                     max_samples: int = 0, progress: list[int] | None = None,
                     header: str | None = None) -> int:
    """Write the replay CSV from a sample source while streaming; returns the sample count.

    Header ``t,ax,ay,az`` (plus ``,gx,gy,gz`` when the source has a gyro): written at once when
    ``header`` is given (the profile is known), else with the first batch. t in seconds from the
    first sample, acceleration in g, angular rate in deg/s. Rows are flushed per batch, so an
    interrupted recording keeps what it got. ``duration_s`` counts from the call, including the
    time spent finding and connecting to the sensor.
    """
    count = 0
    t0: float | None = None
    with path.open("w", encoding="utf-8", newline="") as f:
        if header is not None:
            f.write(header)
            f.flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration_s or None), source:
                async for batch in source:
                    if t0 is None:
                        t0 = float(batch.t_s[0])
                    if header is None:  # no profile given: the first batch says whether there is a gyro
                        header = csv_header(batch.gyro_dps is not None)
                        f.write(header)
                    gyro = header.startswith("t,ax,ay,az,gx") and batch.gyro_dps is not None
                    n = len(batch) if not max_samples else min(len(batch), max_samples - count)
                    for i in range(n):
                        cols = [f"{batch.t_s[i] - t0:.4f}", *(f"{v:.5f}" for v in batch.acc_g[i])]
                        if gyro:
                            cols += [f"{v:.4f}" for v in batch.gyro_dps[i]]
                        f.write(",".join(cols) + "\n")
                    f.flush()
                    count += n
                    if progress is not None:
                        progress[0] = count
                    err.write(f"\r{count} samples")
                    err.flush()
                    if max_samples and count >= max_samples:
                        break
    return count
