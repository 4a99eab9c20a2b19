"""Publishing posture state and events: MQTT, Home Assistant discovery, commands.

``mqtt.py`` holds :class:`~slouchd.publish.mqtt.MqttPublisher`, a facade over ``records.py``
(one record per wearer), ``core.py`` (queue, outbox, announcing), ``session.py`` (connect loop),
``sender.py`` (pipelined publishes), ``listener.py`` (commands, HA birth), ``handover.py``
(reload) and ``internals.py`` (private aiomqtt/paho/amqtt parts, version-checked).
``exposes.py`` declares every field Home Assistant sees; ``homeassistant.py`` builds discovery
from it and ``commands.py`` validates commands with it. ``wearer.py`` holds
:class:`~slouchd.publish.wearer.WearerInfo`, ``topics.py`` the topic layout. Nothing is imported
here, so loading the config (which needs ``settings.py``) does not pull in the MQTT stack.
"""
