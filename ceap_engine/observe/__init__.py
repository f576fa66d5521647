"""See a run: the state machine graph, an execution's report page, local history, its cost.

- :mod:`.graph`: an ASL definition as nodes, labelled edges and nested groups (pure).
- :mod:`.dot`: that graph as Graphviz DOT text, and Graphviz (``dot``) to lay it out.
- :mod:`.trace`: what happened to each state of an execution, from its history (pure).
- :mod:`.counts`: each stage's counts and the chain from lines read to actions (pure).
- :mod:`.report`: the self-contained HTML report of one execution.
- :mod:`.executions`: local history read back from the execution journal.
- :mod:`.cost`, :mod:`.measure`, ``prices.json``: the monthly AWS estimate from a measured run.
"""
