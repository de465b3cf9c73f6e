"""Which project secrets a build receives, and what a secret may be (pure rules)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from farm.domain.secrets import (
    DEFAULT_PROTECTED_REFS,
    MIN_MASKED_LENGTH,
    ProjectSecret,
    ProjectSecrets,
    applicable,
    check_name,
    check_patterns,
    check_repo,
    check_secret,
    is_protected_ref,
    masked_values,
    normalize_repo,
    same_repo,
)
from farm.errors import InvalidRequest

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def secret(name: str, value: str, *, protected: bool = False, masked: bool = True) -> ProjectSecret:
    return ProjectSecret("shop", name, protected, masked, NOW, NOW, value=value)


PLAIN = secret("REGISTRY_USER", "registry-user-1")
GUARDED = secret("DEPLOY_TOKEN", "deploy-token-value", protected=True)
REPO = "https://git.example.com/group/shop.git"


def test_default_protects_main_and_master() -> None:
    assert DEFAULT_PROTECTED_REFS == ("main", "master")
    assert ProjectSecrets().protected_refs == DEFAULT_PROTECTED_REFS


@pytest.mark.parametrize(
    ("ref", "patterns", "protected"),
    [
        ("main", DEFAULT_PROTECTED_REFS, True),
        ("refs/heads/main", DEFAULT_PROTECTED_REFS, True),
        ("master", DEFAULT_PROTECTED_REFS, True),
        ("feature/main", DEFAULT_PROTECTED_REFS, False),
        ("mainline", DEFAULT_PROTECTED_REFS, False),
        ("Main", DEFAULT_PROTECTED_REFS, False),  # case matters, as in git
        ("release/1.2", ("release/*",), True),
        ("refs/tags/v1.0", ("v*",), True),
        ("v1.0", ("release/*",), False),
        ("main", (), False),  # an empty list protects nothing
    ],
)
def test_protected_refs_are_fnmatch_patterns_on_the_short_name(
    ref: str, patterns: tuple[str, ...], protected: bool
) -> None:
    assert is_protected_ref(ref, patterns) is protected


def test_protected_secrets_only_reach_protected_refs() -> None:
    project = ProjectSecrets(secrets=(PLAIN, GUARDED), repo=REPO)
    assert set(applicable(project, "main", repo=REPO)) == {"REGISTRY_USER", "DEPLOY_TOKEN"}
    assert set(applicable(project, "feature-x", repo=REPO)) == {"REGISTRY_USER"}
    custom = ProjectSecrets(secrets=(PLAIN, GUARDED), protected_refs=("release/*",), repo=REPO)
    assert set(applicable(custom, "main", repo=REPO)) == {"REGISTRY_USER"}
    assert set(applicable(custom, "release/2", repo=REPO)) == {"REGISTRY_USER", "DEPLOY_TOKEN"}


def test_only_builds_of_the_bound_repository_get_any_secret() -> None:
    project = ProjectSecrets(secrets=(PLAIN, GUARDED), repo=REPO)
    # The same base name (the same ``project``) from another host or group: nothing.
    for other in (
        "https://evil.example/x/shop.git",
        "https://git.example.com/other/shop.git",
        "/srv/git/shop",
        "shop",
    ):
        assert applicable(project, "main", repo=other) == {}, other
        assert not project.trusts(other)
    # The same repository spelt differently: everything, as before.
    assert set(applicable(project, "main", repo="https://GIT.example.com/group/shop/")) == {
        "REGISTRY_USER",
        "DEPLOY_TOKEN",
    }
    # A project bound to no repository gives its secrets to no build at all.
    unbound = ProjectSecrets(secrets=(PLAIN, GUARDED))
    assert unbound.repo is None and applicable(unbound, "main", repo=REPO) == {}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://github.com/org/shop.git", "https://github.com/org/shop"),
        ("https://github.com/org/shop.git/", "https://github.com/org/shop"),
        ("https://github.com/org/shop//", "https://github.com/org/shop.git"),
        ("HTTPS://GitHub.COM/org/shop", "https://github.com/org/shop"),
        ("https://github.com:443/org/shop", "https://github.com/org/shop"),
        ("https://ci:t0ken@github.com/org/shop.git", "https://github.com/org/shop"),
        ("git@github.com:org/shop.git", "ssh://git@github.com/org/shop"),
        ("git@github.com:/org/shop", "ssh://git@github.com/org/shop.git"),
        ("ssh://git@GitHub.com:22/org/shop.git", "git@github.com:org/shop"),
        ("ssh://git@[::1]:2222/org/shop.git", "ssh://git@[::1]:2222/org/shop"),
        ("/srv/git/shop", "/srv/git/shop/"),
        ("/srv//git/./shop", "/srv/git/shop"),
        ("file:///srv/git/shop", "/srv/git/shop"),
        ("file://localhost/srv/git/shop/", "/srv/git/shop"),
    ],
)
def test_spellings_of_one_repository_are_the_same_repo(a: str, b: str) -> None:
    assert normalize_repo(a) == normalize_repo(b) is not None
    assert same_repo(a, b) and same_repo(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://github.com/org/shop", "https://evil.example/org/shop"),
        ("https://github.com/org/shop", "https://github.com/fork/shop"),
        ("https://github.com/org/shop", "https://github.com/Org/Shop"),  # paths keep case
        ("https://github.com/org/shop", "http://github.com/org/shop"),
        ("https://github.com/org/shop", "https://github.com:8443/org/shop"),
        ("https://github.com/org/shop", "https://github.com/org/shop/.git"),
        ("https://github.com/org/shop", "https://github.com/org/shop.git.git"),
        ("git@github.com:org/shop", "ssh://deploy@github.com/org/shop"),
        ("git@github.com:org/shop", "https://github.com/org/shop"),
        ("/srv/git/shop", "/srv/git/shop.git"),  # two directories
        ("/srv/git/shop", "/srv/git/x/../shop"),  # '..' may cross a symlink: no match
        ("/srv/git/shop", "srv/git/shop"),  # relative: to what?
        ("/srv/git/shop", "file://otherhost/srv/git/shop"),
    ],
)
def test_other_repositories_are_not_the_same_repo(a: str, b: str) -> None:
    assert not same_repo(a, b) and not same_repo(b, a)


@pytest.mark.parametrize(
    "repo",
    [
        "",
        " https://github.com/org/shop",
        "shop",
        "../shop",
        "/srv/../shop",
        "https://github.com/",
        "https://github.com/org/shop?x=1",
        "https://github.com:99999/org/shop",
        "https://github.com/org/\nshop",
    ],
)
def test_addresses_that_match_nothing_cannot_be_bound(repo: str) -> None:
    assert normalize_repo(repo) is None
    assert not same_repo(repo, repo)
    with pytest.raises(InvalidRequest, match="cannot be bound"):
        check_repo(repo)


def test_a_url_with_a_password_cannot_be_bound_but_matches_without_it() -> None:
    with pytest.raises(InvalidRequest, match="without a password"):
        check_repo("https://ci:t0ken@github.com/org/shop.git")
    assert check_repo("git@github.com:org/shop.git") == "git@github.com:org/shop.git"
    assert same_repo("https://github.com/org/shop", "https://ci:t0ken@github.com/org/shop")


def test_masked_values_are_the_masked_secrets_the_job_really_gets() -> None:
    loud = secret("NOT_MASKED", "shown-in-logs", masked=False)
    applied = {s.name: s for s in (PLAIN, GUARDED, loud)}
    env = {"REGISTRY_USER": "registry-user-1", "DEPLOY_TOKEN": "overridden by the build"}
    assert masked_values(applied, env) == {"registry-user-1"}


def test_a_secret_value_never_shows_in_its_repr() -> None:
    assert "deploy-token-value" not in repr(GUARDED)
    assert "deploy-token-value" not in repr(ProjectSecrets(secrets=(GUARDED,)))
    assert "deploy-token-value" not in repr(GUARDED.info())


@pytest.mark.parametrize("name", ["A", "_x", "DEPLOY_TOKEN", "a1_B2"])
def test_variable_names_are_accepted(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "1A", "A-B", "A B", "A.B", "Ä", "A=B", "x" * 256])
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest, match="is not a variable name"):
        check_name(name)


def test_a_masked_value_needs_eight_characters_and_the_error_hides_it() -> None:
    short = "x" * (MIN_MASKED_LENGTH - 1)
    with pytest.raises(InvalidRequest) as err:
        check_secret("TOKEN", "hunter2", masked=True)
    assert "at least 8 characters" in str(err.value) and "hunter2" not in str(err.value)
    check_secret("TOKEN", short, masked=False)  # unmasked: any length
    check_secret("TOKEN", short + "x", masked=True)
    check_secret("EMPTY", "", masked=False)


def test_huge_or_nul_values_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="cannot be masked"):
        check_secret("BIG", "x" * 2000, masked=True)
    check_secret("BIG", "x" * 2000, masked=False)
    with pytest.raises(InvalidRequest, match="over"):
        check_secret("HUGE", "x" * (64 * 1024 + 1), masked=False)
    with pytest.raises(InvalidRequest, match="NUL"):
        check_secret("NUL", "abc\0defghij", masked=False)


def test_patterns_are_checked_and_deduplicated() -> None:
    assert check_patterns(["main", "release/*", "main"]) == ("main", "release/*")
    assert check_patterns([]) == ()
    for bad in ["", " main", "a\nb", "x" * 256]:
        with pytest.raises(InvalidRequest):
            check_patterns([bad])
    with pytest.raises(InvalidRequest, match="at most"):
        check_patterns([f"p{i}" for i in range(101)])
