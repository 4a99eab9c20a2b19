"""The coach's settings in the config: [stretch], [coach], [history], per-wearer [wearers.wellbeing]
and [wearers.coach] (docs/coach.md), checked like every other table."""

from __future__ import annotations

from pathlib import Path

import pytest

from slouchd.config import ConfigError, check_resources, load_config, parse_config
from tests.cli_helpers import run_cli


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "slouchd.toml"
    p.write_text(text)
    return p


def test_defaults_follow_the_evidence_and_the_docs() -> None:
    cfg = load_config(None)
    assert cfg.wellbeing.break_after_min == 30.0  # short breaks every 20-30 min of sitting
    assert cfg.stretch.catalog == "" and cfg.stretch.reach_timeout_s == 30.0
    assert cfg.coach.default_session == "desk_break" and cfg.coach.goal.breaks == 6
    assert cfg.history.keep_days == 120


def test_per_wearer_wellbeing_and_coach_overrides_merge_sub_tables(tmp_path: Path) -> None:
    p = write(tmp_path, '[coach.goal]\nupright_pct = 70\n'
                        '[[wearers]]\nname = "ana"\n[wearers.wellbeing]\nbreak_after_min = 20\n'
                        '[wearers.coach]\ndefault_session = "quick"\n[wearers.coach.goal]\nbreaks = 4\n'
                        '[[wearers]]\nname = "bo"\n')
    cfg = load_config(p)
    ana, bo = cfg.wearer("ana"), cfg.wearer("bo")
    assert cfg.wearer_wellbeing(ana).break_after_min == 20 and cfg.wearer_wellbeing(bo).break_after_min == 30
    coach = cfg.wearer_coach(ana)
    assert (coach.default_session, coach.goal.breaks, coach.goal.upright_pct) == ("quick", 4, 70)
    assert cfg.wearer_coach(bo) == cfg.coach


def test_every_mistake_in_the_coach_tables_is_one_line_naming_the_key(tmp_path: Path) -> None:
    p = write(tmp_path, '[stretch]\nbounce_swing_deg = 99\n[coach.plan]\ndays = 1\n'
                        '[history]\nkeep_days = 30\n'
                        '[[wearers]]\nname = "ana"\n[wearers.wellbeing]\nbreak_after_min = 2\n'
                        '[wearers.coach.goal]\nbreaks = 99\n[wearers.coach.notices]\nmorning_end = "06:00"\n')
    with pytest.raises(ConfigError) as err:
        load_config(p)
    lines = str(err.value).splitlines()
    assert lines == [
        f"{p}: stretch.bounce_swing_deg = 99: must be 1..30",
        f"{p}: coach.plan.days = 1: must be 2..365",
        f"{p}: history.keep_days = 30: must be 90..3660",
        f"{p}: wearers[0].wellbeing.break_after_min = 2: must be 5..480",
        f"{p}: wearers[0].coach.goal.breaks = 99: must be 0..48",
        f"{p}: wearers[0].coach.notices.morning_end = '06:00': must be after morning_start ('07:00')",
    ], lines


def test_check_config_names_an_unknown_default_session_and_a_missing_catalogue(tmp_path: Path) -> None:
    cfg = parse_config({"coach": {"default_session": "yoga"},
                        "wearers": [{"name": "ana", "coach": {"default_session": "nap"}}]}, "c.toml")
    errors: list[str] = []
    check_resources(cfg, errors=errors)
    assert errors == ['c.toml: coach.default_session = "yoga": no such session in the stretch catalogue '
                      "(known: desk_break, quick)\n"
                      'c.toml: wearers[0].coach.default_session = "nap": no such session in the stretch '
                      "catalogue (known: desk_break, quick)"]
    p = write(tmp_path, f'[stretch]\ncatalog = "{tmp_path / "none.toml"}"\n')
    res = run_cli("check-config", str(p))
    assert res.returncode == 2 and "stretch.catalog" in res.stderr and "none.toml" in res.stderr, res.stderr
