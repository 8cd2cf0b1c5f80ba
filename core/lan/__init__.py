"""The worker's DeepStack / CodeProject.AI-compatible API on the LAN (see core/lan/server.py).

The only part of ``core`` that imports Starlette and uvicorn, and only once the user turns it on; the
wire format (:mod:`core.lan.wire`) and the request reader (:mod:`core.lan.form`) are shared with the relay.
"""
