"""GeoLite2 country CSVs into scopes, and the bundled excerpt."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from farm.errors import InvalidRequest
from farm.rollout import Resolver, load_plan, read_geolite, scopes_yaml
from farm.rollout.networks import Span, find_overlaps, parse_cidr

CONFIGS = Path(__file__).parents[3] / "configs" / "rollout"

LOCATIONS = """\
geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,is_in_european_union
6251999,en,NA,"North America",CA,Canada,0
6252001,en,NA,"North America",US,"United States",0
2921044,en,EU,Europe,DE,Germany,1
6255148,en,EU,Europe,,,0
"""

BLOCKS_V4 = """\
network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider
24.64.0.0/14,6251999,6251999,,0,0
24.68.0.0/14,6251999,6251999,,0,0
99.224.0.0/11,6251999,6251999,,0,0
73.0.0.0/8,6252001,6252001,,0,0
158.69.0.0/17,,6251999,,0,0
192.0.2.0/24,2921044,6252001,6252001,0,0
198.51.100.0/24,6255148,6255148,,0,0
203.0.113.0/24,,,,1,0
"""

BLOCKS_V6 = """\
network,geoname_id,registered_country_geoname_id,represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider,is_anycast
2001:568::/29,6251999,6251999,,0,0,
2601::/20,6252001,6252001,,0,0,0
"""


def test_blocks_become_collapsed_scopes() -> None:
    scopes = read_geolite(
        [BLOCKS_V4, BLOCKS_V6], LOCATIONS, {"canada": ["CA"], "usa": ["us"], "europe": ["DE"]}
    )
    assert scopes == {
        # two adjacent /14s merged; 158.69.0.0/17 by its registered country
        "canada": ["24.64.0.0/13", "99.224.0.0/11", "158.69.0.0/17", "2001:568::/29"],
        "usa": ["73.0.0.0/8", "2601::/20"],
        # used in Germany, held by the US: geoname_id (where it is used) decides
        "europe": ["192.0.2.0/24"],
    }


def test_a_scope_may_hold_several_countries() -> None:
    scopes = read_geolite([BLOCKS_V4], LOCATIONS, {"north-america": ["CA", "US"]})
    assert "73.0.0.0/8" in scopes["north-america"] and "24.64.0.0/13" in scopes["north-america"]
    assert read_geolite([BLOCKS_V4], LOCATIONS, {"de": "DE"}) == {"de": ["192.0.2.0/24"]}


def test_a_country_without_blocks_gives_an_empty_scope() -> None:
    assert read_geolite([BLOCKS_V6], LOCATIONS, {"de": ["DE"]}) == {"de": []}


@pytest.mark.parametrize(
    ("countries", "message"),
    [
        ({"canada": ["XX"]}, "unknown country code 'XX'"),
        ({"a": ["CA"], "b": ["CA"]}, "country CA is in scope 'a' and 'b'"),
        ({"Canada": ["CA"]}, "scope name 'Canada' is not allowed"),
        ({"all": ["CA"]}, "scope 'all' is built in"),
    ],
)
def test_bad_country_mappings(countries: dict[str, list[str]], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        read_geolite([BLOCKS_V4], LOCATIONS, countries)


def test_bad_csv_files() -> None:
    with pytest.raises(InvalidRequest, match="missing column"):
        read_geolite(["a,b\n1,2\n"], LOCATIONS, {"c": ["CA"]})
    with pytest.raises(InvalidRequest, match="locations CSV"):
        read_geolite([BLOCKS_V4], "x,y\n", {"c": ["CA"]})
    broken = BLOCKS_V4 + "24.72.0.1/13,6251999,6251999,,0,0\n"
    with pytest.raises(InvalidRequest, match="blocks CSV #2 line 10"):
        read_geolite([BLOCKS_V6, broken], LOCATIONS, {"c": ["CA"]})


def test_a_byte_order_mark_is_ignored() -> None:
    scopes = read_geolite(["\ufeff" + BLOCKS_V6], "\ufeff" + LOCATIONS, {"c": ["CA"]})
    assert scopes == {"c": ["2001:568::/29"]}


def test_scopes_yaml_is_valid_plan_yaml() -> None:
    text = scopes_yaml({"canada": ["24.64.0.0/13", "2001:568::/29"], "empty": []})
    assert text == (
        'scopes:\n  canada:\n    - "24.64.0.0/13"\n    - "2001:568::/29"\n  empty: []\n'
    )
    assert yaml.safe_load(text) == {
        "scopes": {"canada": ["24.64.0.0/13", "2001:568::/29"], "empty": []}
    }
    with pytest.raises(InvalidRequest):
        scopes_yaml({"x": ['10.0.0.0/8"\n']})
    with pytest.raises(InvalidRequest):
        scopes_yaml({"all": ["10.0.0.0/8"]})


def _excerpt() -> dict[str, list[str]]:
    return read_geolite(
        [
            (CONFIGS / "geolite2-country-blocks-ipv4.excerpt.csv").read_text(),
            (CONFIGS / "geolite2-country-blocks-ipv6.excerpt.csv").read_text(),
        ],
        (CONFIGS / "geolite2-country-locations-en.excerpt.csv").read_text(),
        {"canada": ["CA"], "usa": ["US"]},
    )


def test_the_bundled_excerpt_gives_disjoint_canada_and_usa_scopes() -> None:
    scopes = _excerpt()
    assert len(scopes["canada"]) >= 20 and len(scopes["usa"]) >= 15
    assert any(":" in c for c in scopes["canada"]) and any(":" in c for c in scopes["usa"])
    spans = [Span.of(parse_cidr(c), name) for name, cidrs in scopes.items() for c in cidrs]
    assert find_overlaps(spans) == []
    r = Resolver.compile(scopes, ["canada"])
    assert r.resolve("99.230.1.1") == "canada"  # Rogers
    assert r.resolve("2607:fea8::1") == "canada"
    assert r.resolve("73.1.2.3") is None  # Comcast: usa, not live
    assert r.resolve("90.1.2.3") is None  # France


def test_a_plan_built_from_the_excerpt_loads() -> None:
    text = scopes_yaml(_excerpt()) + (
        "steps:\n"
        "  - {scope: canada, bake: 60}\n"
        "  - {scope: usa, approve: manual}\n"
        "  - {scope: all}\n"
    )
    plan = load_plan(text)
    assert plan.step_scopes == ["canada", "usa", "all"]
    assert plan.scopes["canada"][0] == "24.64.0.0/13"
