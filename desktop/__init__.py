"""The tray app: a PySide6 + qasync UI over core's worker, nothing more."""
