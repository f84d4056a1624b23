"""Redis behind --shared: one quota, breaker, outcome cache and region counts for every process
of one API (the [redis] extra). Opened by :func:`lookup.scale.redis.connect.open_quota`."""
