"""``ceap serve``: the Step Functions API on this machine, over the engine (docs/serve.md).

- :mod:`.endpoint`: the ASGI app (AWS JSON 1.0; APIs mounted by ``X-Amz-Target`` prefix);
- :mod:`.service`: the Step Functions actions; :mod:`.machines` the resources,
  :mod:`.runs` the executions and their journal, :mod:`.resume` how a journaled execution
  goes on after a restart, :mod:`.callbacks` task tokens and activities;
- :mod:`.shapes`: request validation from the API model; :mod:`.clocks`: ``--wait-time-scale``.

The command (the composition root that wires the SQLite journal) is ``ceap_engine.cli.serve``.
"""
