"""The ``insane`` command: the composition root that wires core, relay and desktop together."""
