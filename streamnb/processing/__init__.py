"""Processing: an event's path from a topic to the agent, and back out at the commit.

:mod:`~streamnb.processing.source` (consumer, batches; with
:mod:`~streamnb.processing.runs`, what is handed out, and
:mod:`~streamnb.processing.commits`, the commits) ->
:mod:`~streamnb.processing.forwarding` (``group_by``/``through`` re-keying) ->
:mod:`~streamnb.processing.streams` (decoding, stream operations) ->
:mod:`~streamnb.processing.agents` (supervision, retries). Dead letters
(:mod:`~streamnb.processing.deadletters`), timers and tasks
(:mod:`~streamnb.processing.tasks`), what a source needs of its agent
(:mod:`~streamnb.processing.supervision`) and the virtual clock's feed
(:mod:`~streamnb.processing.feed`) complete it.
"""

__all__: list[str] = []
