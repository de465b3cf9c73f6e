"""``include: component:`` resolved offline, from a local component catalog directory.

GitLab fetches ``host/group/project/name@version`` from the project's repository at that
version. Here the farm setting ``FARM_COMPONENT_CATALOG`` names a directory holding
copies of component projects, laid out as host and project path::

    <catalog>/<host>/<group>/<project>@<version>/templates/<name>.yml   (this version)
    <catalog>/<host>/<group>/<project>/templates/<name>.yml             (any version)

and in each, ``templates/<name>/template.yml`` works as well as ``templates/<name>.yml``,
as in GitLab's catalog. The first file that exists is used. Reading goes through
``PipelineContext.read_component`` (paths relative to the catalog); nothing is fetched.
"""

from __future__ import annotations

from dataclasses import dataclass

ADDRESS_HELP = "host/group/project/name@version, like gitlab.com/my-org/components/lint@1.0"


@dataclass(frozen=True)
class Component:
    """A parsed component address."""

    host: str
    project: str  # group/.../project
    name: str
    version: str

    @property
    def address(self) -> str:
        return f"{self.host}/{self.project}/{self.name}@{self.version}"

    def project_dirs(self) -> list[str]:
        """Catalog directories that may hold this component's project, best first."""
        base = f"{self.host}/{self.project}"
        dirs = [base] if self.version in ("~latest", "") else [f"{base}@{self.version}", base]
        return dirs

    def candidates(self) -> list[tuple[str, str]]:
        """(project directory, template path) pairs to try, relative to the catalog."""
        found: list[tuple[str, str]] = []
        for project in self.project_dirs():
            found.append((project, f"{project}/templates/{self.name}.yml"))
            found.append((project, f"{project}/templates/{self.name}/template.yml"))
        return found

    def context(self) -> dict[str, str]:
        """What ``$[[ component.X ]]`` may read (``spec:component``)."""
        return {"name": self.name, "version": self.version, "reference": self.version}


def parse_address(text: str) -> Component | str:
    """The component ``text`` names, or why it is not a component address."""
    path, at, version = text.strip().partition("@")
    if not at or not version:
        return f"component '{text}' needs a version after @ ({ADDRESS_HELP})"
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3 or any(p in (".", "..") for p in parts) or "\\" in path:
        return f"component '{text}' is not an address like {ADDRESS_HELP}"
    if "/" in version or version in (".", ".."):
        return f"component '{text}' has an invalid version '{version}'"
    return Component(parts[0], "/".join(parts[1:-1]), parts[-1], version)


def not_configured(address: str) -> str:
    """The error for a component include when no catalog is configured."""
    return (
        f"include:component '{address}' needs a local component catalog: set the farm setting "
        "FARM_COMPONENT_CATALOG (component_catalog) to a directory holding "
        "<host>/<project>/templates/<name>.yml (see docs/GITLAB_COMPAT.md)"
    )
