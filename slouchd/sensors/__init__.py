"""Sources of IMU samples: BLE sensors (via firmware profiles), recordings, the simulated wearer."""
