"""The engine shared by the relay and the worker. Imports no Qt and no Starlette."""
