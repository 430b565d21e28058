"""Drop-in servers for two hosted job services, so their official clients run on
redispool unchanged (``redispool serve`` mounts both):

- ``/compat/spooled``: the spooled job service's REST protocol (``SpooledClient``,
  ``SpooledWorker``), see ``spooled.py``;
- ``/compat/cueapi``: the cueapi cron service's worker protocol (``cueapi-worker``,
  ``cueapi-sdk``), see ``cueapi.py``.

Both are thin translations onto the Engine (the native API's Lua scripts); neither
keeps a second state machine. Each is a Starlette app: ``create_app(engine, tokens)``.
"""
from .cueapi import create_app as create_cueapi_app
from .spooled import create_app as create_spooled_app

__all__ = ["create_cueapi_app", "create_spooled_app"]
