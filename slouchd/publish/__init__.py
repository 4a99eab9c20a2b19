"""Publishing posture state and events: MQTT, Home Assistant discovery, commands.

``mqtt.py`` holds :class:`~slouchd.publish.mqtt.MqttPublisher` (the session), ``wearer.py``
:class:`~slouchd.publish.wearer.WearerInfo`, ``commands.py`` command validation, ``topics.py``
the topic layout and ``homeassistant.py`` the discovery payloads. Nothing is imported here, so
loading the config (which needs ``settings.py``) does not pull in the MQTT stack.
"""
