"""``ceap serve``: the Step Functions and SQS APIs on this machine, over the engine (docs/serve.md).

- :mod:`.endpoint`: the ASGI app (AWS JSON 1.0; APIs mounted by ``X-Amz-Target`` prefix);
- :mod:`.service`: the Step Functions actions; :mod:`.machines` the resources,
  :mod:`.runs` the executions and their journal, :mod:`.resume` how a journaled execution
  goes on after a restart, :mod:`.callbacks` task tokens and activities;
- :mod:`.shapes`: request validation from the API model; :mod:`.clocks`: ``--wait-time-scale``;
- :mod:`.pipes`: each workflow's Pipe, from its queue to the served state machine (the SQS API
  mounted beside Step Functions is :mod:`ceap_engine.queueing.api`).

The command (the composition root that wires the SQLite journal and queues) is ``ceap_engine.cli.serve``.
"""
