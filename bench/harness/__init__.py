"""Side-by-side proxy benchmark: Bosun's proxy, Envoy, HAProxy and nginx on loopback."""
