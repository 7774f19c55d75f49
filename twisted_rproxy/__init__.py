"""twisted_rproxy: an nginx-compatible reverse proxy built on Twisted."""
