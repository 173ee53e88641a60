"""edgebench shared plumbing (MQTT transport, embedded broker)."""
