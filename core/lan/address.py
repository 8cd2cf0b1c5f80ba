"""The LAN API's address setting, ``[HOST:]PORT`` (no Starlette here: the settings import it).

parse_address("32168")            # ("127.0.0.1", 32168): loopback unless a host is named
parse_address("0.0.0.0:32168")    # every interface: the user's explicit choice
"""

from __future__ import annotations

DEFAULT_PORT = 32168  # CodeProject.AI Server's port; Blue Iris and Agent DVR suggest it


def parse_address(value: str) -> tuple[str, int]:
    """``"32168"`` → ("127.0.0.1", 32168); ``"0.0.0.0:32168"``, ``"[::1]:32168"``, ``"host:port"``.

    Loopback unless a host is named: serving the LAN is the user's explicit choice.
    """
    text = value.strip()
    host, port = "127.0.0.1", text
    if text.startswith("["):
        inner, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError("write an IPv6 address as [ADDRESS]:PORT")
        host, port = inner, rest[1:]
    elif ":" in text:
        host, _, port = text.rpartition(":")
    if not host or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("not [HOST:]PORT with a port from 0 to 65535")
    return host, int(port)
