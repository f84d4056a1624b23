"""Where the learned region counts live, from settings: nowhere (off, the default), the
local file, or Redis beside the shared quota (``--shared``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lookup.files.regions import RegionCounts, RegionSink

if TYPE_CHECKING:
    from lookup.engine.checker import Checker
    from lookup.runtime.settings import Settings

__all__ = ["region_sink"]

log = logging.getLogger("lookup.regions")


def region_sink(settings: Settings, checker: Checker | None = None) -> RegionSink | None:
    """The region counts the lookup path should learn from (``None``: ``learn_regions`` off).

    With ``shared_url`` and a checker paced by the Redis quota, the counts are that Redis's
    (one hash per API namespace, through the quota's client); otherwise the local file.
    """
    if not settings.learn_regions:
        return None
    if settings.shared_url and checker is not None:
        from lookup.scale.redis.quota import RedisQuota
        from lookup.scale.redis.regions import RedisRegionCounts

        quota = checker.quota
        if isinstance(quota, RedisQuota):
            return RedisRegionCounts(quota.link.client, quota.namespace)
        log.info("the region counts stay in the local file: this checker is not paced by "
                 "the Redis quota")  # fmt: skip
    return RegionCounts(settings.regions_file)
