"""slouchd: a slouch detector daemon for a back-worn IMU, publishing to MQTT and Home Assistant."""

__version__ = "0.1.0"
