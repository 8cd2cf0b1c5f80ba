"""Tenant-side bridges that run beside an NVR and talk to the relay over its public API only.

    insane bridge frigate     FrigateBridge (bridge.py): Frigate's MQTT events in, one relay event per
                              tracked object, the verdict back to Frigate as a sub-label and out on MQTT
    insane mqtt publish       MqttPublisher (publisher.py): the tenant's verdicts from the relay's result
                              stream out on MQTT, with Home Assistant discovery

Pieces: ``mqtt_link`` (one broker connection that comes back), ``results`` (the relay's result stream,
resumed from a saved cursor), ``verdicts`` and ``discovery`` (topics, payloads, ON/OFF), ``frigate_events``
and ``frigate_api`` (Frigate's MQTT messages and HTTP API), ``collector`` (moments of one tracked object),
``spool`` and ``relay_api`` (events kept on disk until the relay has them), ``statefile``.
Nothing here imports Qt, Starlette or the detector.
"""
