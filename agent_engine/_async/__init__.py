"""The async source of the managers, transports and pool; `_sync` is generated from it."""
