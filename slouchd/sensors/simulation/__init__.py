"""The simulated wearer, in parts: frames (rotations and mounts), knots (smooth scripted values),
script (the day's episodes), motion (what the sensor feels), settings, wearer (samples and radio)
and source (the asynchronous sensor the daemon reads). The public face is
:mod:`slouchd.sensors.simulated`."""
