"""The front door of a workflow: its queue, the Pipe that starts executions from it, the SQS API.

* :mod:`.pipe`: the EventBridge Pipe as AWS runs it (InputTemplate, batch of one,
  REQUEST_RESPONSE for Express, FIRE_AND_FORGET for Standard);
* :mod:`.api`: the SQS API (AWS JSON protocol) over any :class:`~ceap_engine.ports.Queues`,
  independent of an HTTP server.
"""
