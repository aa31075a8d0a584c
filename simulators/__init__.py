"""Device simulators that reuse the drivers' codecs, and the session scenarios they play."""
