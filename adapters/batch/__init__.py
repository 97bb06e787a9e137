"""Batch scoring: inputs read in bounded chunks (:mod:`~adapters.batch.readers`), scored by the
local or the Ray engine (:mod:`~adapters.batch.scoring`, :mod:`~adapters.batch.ray`), written to
and read back from the predictions database (:mod:`~adapters.batch.predictions`), whose
``inferences`` table the server's inference log writes (:mod:`~adapters.batch.inferences`).

``score.py`` is its command line; the data plane reads stored predictions back through it. May
import :mod:`adapters.execution` and everything below it.
"""
