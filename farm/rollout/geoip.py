"""Scopes from MaxMind GeoLite2 *Country* CSV files, and the ``scopes:`` YAML to paste.

Files (the caller reads them; this module only takes their text):

- ``GeoLite2-Country-Blocks-IPv4.csv`` / ``-IPv6.csv``: ``network, geoname_id,
  registered_country_geoname_id, represented_country_geoname_id, is_anonymous_proxy,
  is_satellite_provider[, is_anycast]``;
- ``GeoLite2-Country-Locations-en.csv``: ``geoname_id, locale_code, continent_code,
  continent_name, country_iso_code, country_name, is_in_european_union``.

A block's country is its ``geoname_id`` (where the addresses are used) and, when MaxMind
left that empty, its ``registered_country_geoname_id`` (who holds them). Blocks of the
same scope are collapsed (adjacent and nested networks merged) because GeoLite2 splits
countries into many small blocks and plans are bounded to 100,000 CIDRs.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from farm.errors import InvalidRequest
from farm.rollout.networks import ALL, Network, scope_name_problem

__all__ = ["read_geolite", "read_locations", "scopes_yaml"]

_BLOCK_COLUMNS = ("network", "geoname_id", "registered_country_geoname_id")
_LOCATION_COLUMNS = ("geoname_id", "country_iso_code")


def _rows(text: str, required: Sequence[str], what: str) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    missing = [c for c in required if c not in (reader.fieldnames or ())]
    if missing:
        raise InvalidRequest(
            f"{what}: not a GeoLite2 Country CSV (missing column(s) {', '.join(missing)})"
        )
    for row in reader:
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}


def read_locations(locations_csv_text: str) -> dict[str, str]:
    """``geoname_id`` → ISO country code (rows for continents only, without a country, skipped)."""
    out: dict[str, str] = {}
    for _line, row in _rows(locations_csv_text, _LOCATION_COLUMNS, "locations CSV"):
        if row["geoname_id"] and row["country_iso_code"]:
            out[row["geoname_id"]] = row["country_iso_code"].upper()
    return out


def _iso_to_scope(countries: Mapping[str, Iterable[str]], known: Iterable[str]) -> dict[str, str]:
    known_codes = set(known)
    owner: dict[str, str] = {}
    for scope, codes in countries.items():
        if scope == ALL:
            raise InvalidRequest("scope 'all' is built in and cannot be made from countries")
        problem = scope_name_problem(scope)
        if problem:
            raise InvalidRequest(problem)
        for code in [codes] if isinstance(codes, str) else codes:
            iso = code.strip().upper()
            if iso not in known_codes:
                raise InvalidRequest(f"scope '{scope}': unknown country code {code!r}")
            if iso in owner and owner[iso] != scope:
                raise InvalidRequest(f"country {iso} is in scope '{owner[iso]}' and '{scope}'")
            owner[iso] = scope
    return owner


def read_geolite(
    blocks_csv_texts: Iterable[str],
    locations_csv_text: str,
    countries: Mapping[str, Iterable[str]],
) -> dict[str, list[str]]:
    """Scope name → CIDRs of the countries given for it (ISO codes like ``CA``, ``US``).

    Every scope of ``countries`` is in the result, in that order, with its networks
    collapsed and sorted (IPv4 first); a scope whose countries have no block gets an empty
    list, which :func:`~farm.rollout.plan.load_plan` would refuse. Raises
    :class:`InvalidRequest` for unknown country codes, a country claimed by two scopes, or
    a malformed CSV (naming the file number and line).
    """
    locations = read_locations(locations_csv_text)
    owner = _iso_to_scope(countries, locations.values())
    by_scope: dict[str, list[Network]] = {scope: [] for scope in countries}
    for n, text in enumerate(blocks_csv_texts, start=1):
        what = f"blocks CSV #{n}"
        for line, row in _rows(text, _BLOCK_COLUMNS, what):
            gid = row["geoname_id"] or row["registered_country_geoname_id"]
            scope = owner.get(locations.get(gid, ""))
            if scope is None:
                continue  # another country, a continent-only row, or no location at all
            try:
                by_scope[scope].append(ipaddress.ip_network(row["network"], strict=True))
            except ValueError as exc:
                raise InvalidRequest(f"{what} line {line}: {exc}") from None
    return {scope: _collapse(nets) for scope, nets in by_scope.items()}


def _collapse(nets: list[Network]) -> list[str]:
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    merged: list[Network] = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
    return [str(n) for n in merged]


def scopes_yaml(scopes: Mapping[str, Sequence[str]]) -> str:
    """A ``scopes:`` block for ``.farm/rollout.yml`` (CIDRs quoted: IPv6 holds colons)."""
    lines = ["scopes:"]
    for name, cidrs in scopes.items():
        problem = scope_name_problem(name)
        if problem or name == ALL:
            raise InvalidRequest(problem or "scope 'all' is built in and cannot be written")
        if not cidrs:
            lines.append(f"  {name}: []")
            continue
        lines.append(f"  {name}:")
        for cidr in cidrs:
            try:  # parsing also keeps quotes and newlines out of the YAML
                net = ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise InvalidRequest(f"scope '{name}': {exc}") from None
            lines.append(f'    - "{net}"')
    return "\n".join(lines) + "\n"
