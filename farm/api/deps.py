"""Dependencies shared by the routers (``Annotated`` aliases).

Async, though they only read the app's state: FastAPI runs a sync dependency in its thread
pool, a thread hop per dependency per request (issue 10: a third of the API's CPU on
the worker routes went to such hops and to the event loop around them).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from farm.coordinator.service import Coordinator
from farm.db.repository import Store
from farm.registry.store import BlobStore
from farm.settings import Settings


async def _coordinator(request: Request) -> Coordinator:
    coord: Coordinator = request.app.state.coordinator
    return coord


async def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def _blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobstore
    return blobs


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


CoordinatorDep = Annotated[Coordinator, Depends(_coordinator)]
StoreDep = Annotated[Store, Depends(_store)]
BlobsDep = Annotated[BlobStore, Depends(_blobs)]
SettingsDep = Annotated[Settings, Depends(_settings)]
