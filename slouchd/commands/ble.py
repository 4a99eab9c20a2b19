"""``slouchd profiles | scan | decode | record``: the Bluetooth LE sensors from the command line."""

from __future__ import annotations

import argparse
import asyncio
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

#: Exit code when a payload does not decode.
EXIT_UNDECODABLE = 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profiles", help="list firmware profiles, or validate a profile file",
                       description="List the firmware profiles, or validate one profile TOML file.")
    p.add_argument("file", nargs="?", help="a profile file to validate")
    _add_profiles_dir(p)
    p.set_defaults(func=run_profiles)

    p = sub.add_parser("scan", help="find BLE sensors nearby",
                       description="Scan for nearby sensors and show which profile each one matches.")
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
                    "from the first sample). A running sample count goes to stderr; Ctrl-C ends cleanly.")
    p.add_argument("--sensor", required=True, help="BLE address or advertised name")
    p.add_argument("--profile", default="", help='profile name; default: match by advertisement')
    p.add_argument("--duration", type=float, default=0.0, metavar="S",
                   help="stop after, seconds (0 = at Ctrl-C)")
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


def run_scan(args: argparse.Namespace, scanner_cls: Any = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    settings = _settings(args)
    profiles = _profiles(args, settings)
    if scanner_cls is None:
        from bleak import BleakScanner as scanner_cls
    kwargs: dict[str, Any] = {"return_adv": True}
    if settings.adapter:
        kwargs["bluez"] = {"adapter": settings.adapter}
    try:
        found = asyncio.run(scanner_cls.discover(timeout=args.timeout, **kwargs))
    except (TimeoutError, OSError) as error:
        out.write(_no_adapter(error) + "\n")
        return 0
    except Exception as error:  # bleak raises BleakError/BleakDBusError for a missing adapter
        if type(error).__module__.startswith(("bleak", "dbus")):
            out.write(_no_adapter(error) + "\n")
            return 0
        raise
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


def run_record(args: argparse.Namespace, source_factory: Any = None, err: TextIO | None = None) -> int:
    err = err or sys.stderr
    settings = _settings(args)
    profiles = _profiles(args, settings)
    profile = get_profile(profiles, args.profile) if args.profile else None
    out_path = Path(args.out)
    if not out_path.parent.is_dir():
        raise CliError(f"{out_path.parent}: no such directory")
    if source_factory is None:
        from slouchd.sensors.ble import BleSensorSource

        def source_factory() -> Any:
            return BleSensorSource(args.sensor, profile, settings, profiles=profiles)

    progress = [0]
    try:
        asyncio.run(record_csv(source_factory(), out_path, err, args.duration, args.samples, progress))
        how = "written to"
    except KeyboardInterrupt:
        how = "stopped; kept in"
    err.write(f"\n{progress[0]} samples {how} {out_path}\n")
    return 0


async def record_csv(source: Any, path: Path, err: TextIO, duration_s: float = 0.0,
                     max_samples: int = 0, progress: list[int] | None = None) -> int:
    """Write the replay CSV from a sample source while streaming; returns the sample count.

    Header ``t,ax,ay,az`` (plus ``,gx,gy,gz`` when the source has a gyro); t in seconds from the
    first sample, acceleration in g, angular rate in deg/s. Rows are flushed per batch, so an
    interrupted recording keeps what it got.
    """
    count = 0
    t0: float | None = None
    started = time.monotonic()
    with path.open("w", encoding="utf-8", newline="") as f:
        async with source:
            async for batch in source:
                if t0 is None:
                    t0 = float(batch.t_s[0])
                    f.write("t,ax,ay,az,gx,gy,gz\n" if batch.gyro_dps is not None else "t,ax,ay,az\n")
                n = len(batch) if not max_samples else min(len(batch), max_samples - count)
                for i in range(n):
                    cols = [f"{batch.t_s[i] - t0:.4f}", *(f"{v:.5f}" for v in batch.acc_g[i])]
                    if batch.gyro_dps is not None:
                        cols += [f"{v:.4f}" for v in batch.gyro_dps[i]]
                    f.write(",".join(cols) + "\n")
                f.flush()
                count += n
                if progress is not None:
                    progress[0] = count
                err.write(f"\r{count} samples")
                err.flush()
                if (duration_s and time.monotonic() - started >= duration_s) or (
                        max_samples and count >= max_samples):
                    break
    return count
