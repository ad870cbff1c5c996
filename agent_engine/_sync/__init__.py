# Generated from agent_engine/_async/__init__.py by tools/unasync.py: do not edit.
# Change the async source, then run `python tools/unasync.py`.
"""The async source of the managers, transports and pool; `_sync` is generated from it."""
