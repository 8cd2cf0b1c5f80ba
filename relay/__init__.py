"""The hosted relay: tenants, the events API, the worker API and durable results (Starlette)."""
