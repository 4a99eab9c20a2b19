"""The stretch catalogue file: the shipped one is valid, mistakes are one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from slouchd.posture.stretch_catalog import DIRECTIONS
from slouchd.schema import SettingsError
from slouchd.stretches import builtin_catalog_path, load_catalog

STRETCH = '''
[[stretches]]
name = "ext"
direction = "extension"
instruction = "Lean back gently over the chair back."
'''
SESSION = '''
[[sessions]]
name = "s"
steps = ["ext"]
'''


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "stretches.toml"
    p.write_text(text)
    return p


def test_the_shipped_catalogue_has_the_stretches_the_issue_names() -> None:
    cat = load_catalog()
    assert builtin_catalog_path().name == "stretches.toml"
    assert {s.direction for s in cat.stretches} == set(DIRECTIONS)
    desk = cat.session("desk_break")
    assert desk.steps[0] == "thoracic_extension" and len(cat.steps_of(desk)) == 5
    for s in cat.stretches:  # the evidence: holds 10-30 s, 2-4 repetitions
        assert 10 <= s.hold_s <= 30 and 2 <= s.repetitions <= 4
    assert cat.session() is cat.sessions[0]


def test_a_minimal_catalogue_gets_the_defaults(tmp_path: Path) -> None:
    cat = load_catalog(write(tmp_path, STRETCH + SESSION))
    ext = cat.stretch("ext")
    assert (ext.min_deg, ext.max_deg, ext.hold_s, ext.repetitions) == (10.0, 35.0, 15.0, 2)
    assert ext.shown_title == "ext"


@pytest.mark.parametrize(("text", "message"), [
    (STRETCH.replace('"extension"', '"extensoin"') + SESSION,
     'stretches[0].direction = "extensoin": must be one of "extension", "flexion", "side_left", '
     '"side_right", "squeeze" (did you mean \'extension\'?)'),
    (STRETCH + "hold_s = 500\n" + SESSION, "stretches[0].hold_s = 500: must be 3..120"),
    (STRETCH + "max_deg = 12\n" + SESSION, "stretches[0].max_deg = 12: must be at least min_deg + 5 (15)"),
    (STRETCH + SESSION.replace('["ext"]', '["ext", "cat"]'),
     'sessions[0].steps[1] = "cat": no such stretch (known: ext)'),
    (STRETCH + STRETCH + SESSION, 'stretches[1].name = "ext": used twice'),
    (STRETCH + "hold = 10\n" + SESSION, "stretches[0].hold: unknown key (did you mean 'hold_s'?)"),
    (STRETCH, "sessions: the catalogue needs at least one [[sessions]] table"),
    (STRETCH.replace('direction = "extension"', 'direction = "squeeze"') + SESSION,
     "stretches[0].min_deg = 10: must be 0 for a squeeze"),
    (STRETCH.replace('instruction = "Lean back gently over the chair back."\n', "") + SESSION,
     "stretches[0].instruction: missing required key"),
])
def test_mistakes_name_the_file_the_key_and_what_is_allowed(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(SettingsError) as err:
        load_catalog(p)
    assert str(err.value).startswith(f"{p}: {message}")


def test_unreadable_or_broken_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"nope\.toml: no such file$"):
        load_catalog(tmp_path / "nope.toml")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_catalog(write(tmp_path, "[[stretches]\n"))
