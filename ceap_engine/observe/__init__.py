"""See a run: the state machine graph, an execution's report page, its cost.

- :mod:`.graph`: an ASL definition as nodes, labelled edges and nested groups.
- :mod:`.dot`: that graph as Graphviz DOT text, and Graphviz to lay it out.
"""
