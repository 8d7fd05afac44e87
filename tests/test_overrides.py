"""Overrides read one way (sweeplab.overrides, Hydra's parser): keys, sections and selections."""

from __future__ import annotations

from sweeplab.overrides import in_sections, key_of, outside, section_of, under, value_for


def test_keys_with_hydras_prefixes_and_group_choices():
    assert key_of("+tune.name=x") == key_of("++tune.name=x") == key_of("~tune.name") == "tune.name"
    assert key_of("data=digits") == section_of("data=digits") == "data"
    assert section_of("model.hidden=[256,128]") == "model"
    assert key_of("search.space={a: [1, 2") == "search.space"  # Hydra cannot parse it: composing says why
    assert value_for(["a.b=1", "tracking.uri=sqlite:///x.db"], "tracking.uri") == "sqlite:///x.db"


def test_selections_by_section_and_by_key():
    given = ["tracking=default", "tracking.uri=x", "+tune.name=s", "data=digits", "tune.max_failures=2"]
    assert in_sections(given, ("tracking", "tune")) == [
        "tracking.uri=x",
        "+tune.name=s",
        "tune.max_failures=2",
    ]
    assert outside(given, ("tracking",)) == [
        "tracking=default",
        "+tune.name=s",
        "data=digits",
        "tune.max_failures=2",
    ]
    assert under(given, ("tracking", "tune.max_failures")) == [
        "tracking=default",
        "tracking.uri=x",
        "tune.max_failures=2",
    ]
    assert under(["tune.max_failures_x=1"], ("tune.max_failures",)) == []  # a key, not a prefix of text
