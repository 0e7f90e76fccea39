"""One prompt over many rows: :func:`map` / :func:`map_sync` (streams, or a provider's batch
service), their :class:`Job` and :func:`collect` (see :mod:`.mapping`)."""

from nbstream.batch.estimate import Quote, quote
from nbstream.batch.job import MAP_DEFAULTS, Job
from nbstream.batch.mapping import map, map_sync
from nbstream.batch.services import collect

__all__ = ["MAP_DEFAULTS", "Job", "Quote", "collect", "map", "map_sync", "quote"]
