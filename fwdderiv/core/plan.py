"""The planner: a graph's nodes turned into an ordered list of steps.

A *step* covers one node, or several that a fusion rule computes in one pass. Fusion
rules (the modules of :mod:`fwdderiv.fusions`) register here with :func:`register`; the
planner asks each, in order, whether it matches at a node, and falls back to the layer's
own method. The planner and the interpreter (:mod:`fwdderiv.core.interpret`) never name a
layer class: what a rule matches is the rule's business.

Forward plans run the tangents (dense, or windowed in the leading region,
:mod:`fwdderiv.core.local`); reverse plans pull cotangents back. Every step computes what
its nodes would compute one by one, up to float rounding, and a fused step that finds at
run time that it does not pay (a shared window, most units live) runs its nodes one by
one itself.
"""
import contextlib
import math
from typing import NamedTuple

FORWARD, REVERSE, WINDOWED = "forward", "reverse", "windowed"

#: The rules by where they apply: forward (dense tangents), windowed (inside the windowed
#: region) and reverse. Filled by :func:`register` (see :mod:`fwdderiv.fusions`).
RULES = {FORWARD: [], WINDOWED: [], REVERSE: []}


def generation():
    """A number that changes whenever the rules change (graphs key their cached plans on
    it)."""
    return _state["generation"]


_state = {"generation": 0}


@contextlib.contextmanager
def without(*names):
    """Plan without the rules of these names inside the block (all rules if none is
    named): the steps they would fuse run one by one, with the same numbers up to float
    rounding. For tests of a fusion against its unfused steps, and for timing one."""
    saved = {w: list(rules) for w, rules in RULES.items()}
    for w in RULES:
        RULES[w][:] = [r for r in RULES[w] if names and r.name not in names]
    _state["generation"] += 1
    try:
        yield
    finally:
        for w, rules in saved.items():
            RULES[w][:] = rules
        _state["generation"] += 1


def register(rule, *where):
    """Add a fusion rule for the given parts (``"forward"``, ``"windowed"``,
    ``"reverse"``). A rule has a ``name`` and ``match(view, k)``, which returns a step
    covering node ``k`` (forward: ``k`` and the nodes after it; reverse: ``k`` and nodes
    before it) or None. Returns the rule, so a module can register a class at definition."""
    if not where:
        raise ValueError(f"register({rule!r}): name where it applies: 'forward', "
                         f"'windowed' and/or 'reverse'")
    for w in where:
        if w not in RULES:
            raise ValueError(f"register({rule!r}): {w!r} is not one of {sorted(RULES)}")
        if all(r.name != rule.name for r in RULES[w]):
            RULES[w].append(rule)
    _state["generation"] += 1
    return rule


class View(NamedTuple):
    """What a rule sees of the graph while planning.

    ``nodes``: ``(name, layer, inputs)`` tuples, ``inputs`` as value indices (0 is the
    graph's input, ``k + 1`` node k's value); ``uses``: readers per value (the output
    counts one); ``n_win``: nodes in the windowed region; ``grads``: parameter gradients
    are wanted (training: a layer with parameters is not fused away); ``stop``: the
    first node of a reverse pass; ``reduce``: a reverse pass sums blocks of rows at
    value ``stop`` (integrated gradients' path)."""
    nodes: list
    uses: list
    n_win: int = 0
    grads: bool = False
    stop: int = 0
    reduce: bool = False

    def layer(self, k):
        return self.nodes[k].layer

    def only_reader(self, k, j):
        """True if node ``j`` reads node ``k``'s value and nothing else does."""
        return self.nodes[j].inputs == (k + 1,) and self.uses[k + 1] == 1

    def single_producer(self, v, reader):
        """The node producing value ``v`` if ``reader`` is its only reader, it is not before
        ``stop``, and it has no parameters when their gradients are wanted; else None."""
        k = v - 1
        if k < self.stop or self.uses[v] != 1:
            return None
        if self.grads and getattr(self.nodes[k].layer, "param_names", ()):
            return None
        return k


class Step:
    """One step of a plan: ``nodes`` (node indices, in evaluation order) run as one.

    ``rule`` names the fusion rule (``"layer"`` for a node on its own); ``windowed`` says
    whether the step carries windowed tangents. Subclasses implement ``run(ctx)``."""
    rule = "layer"

    def __init__(self, nodes, windowed=False):
        self.nodes = tuple(nodes)
        self.windowed = windowed

    @property
    def last(self):
        return max(self.nodes)

    def __repr__(self):
        return f"{type(self).__name__}({list(self.nodes)})"


class Plan:
    """An ordered list of steps for one mode, with :meth:`explain`."""

    def __init__(self, steps, view, mode, shapes=None, note=None):
        self.steps, self.view, self.mode = list(steps), view, mode
        self.shapes, self.note = shapes, note

    def __iter__(self):
        return iter(self.steps)

    def __len__(self):
        return len(self.steps)

    def rows(self):
        """One dict a step: the nodes it covers, the rule, windowed or dense, and the
        elements of its output value per example (a measure of its work)."""
        names = [n.name for n in self.view.nodes]
        rows = []
        for s in self.steps:
            if not s.nodes:
                rows.append({"nodes": [], "rule": s.rule, "form": "", "elements": ""})
                continue
            out = self.shapes[s.last + 1] if self.shapes is not None else None
            rows.append({"nodes": [names[k] for k in sorted(s.nodes)], "rule": s.rule,
                         "form": "windowed" if s.windowed else "dense",
                         "elements": math.prod(out) if out is not None else ""})
        return rows

    def explain(self):
        """A readable table, one line a step: the nodes it covers, the rule or layer that
        computes them, windowed or dense, and the elements of its output per example;
        then where the windowed run ends and why."""
        head = f"{self.mode} plan, {len(self.steps)} steps"
        lines = [head, f"{'nodes':<40} {'rule':<32} {'form':<9} {'elements':>9}"]
        layers = [type(n.layer).__name__ for n in self.view.nodes]
        for row, s in zip(self.rows(), self.steps):
            rule = row["rule"] if row["rule"] != "layer" else \
                f"{layers[s.nodes[0]]}.{'window_jvp' if s.windowed else self._method()}"
            lines.append(f"{', '.join(row['nodes']):<40} {rule:<32} {row['form']:<9} "
                         f"{row['elements']:>9}")
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def _method(self):
        return "vjp" if self.mode == REVERSE else "jvp"

    def __str__(self):
        return self.explain()


def forward_steps(view, start, stop, fuse, layer_step, window_step, leave_step):
    """Steps for nodes ``start`` to ``stop - 1`` in forward mode: the windowed region
    (nodes below ``view.n_win``) by the windowed rules, then ``leave_step(n_win, keep)``,
    which converts the windows still read to dense tangents (all but value ``keep``, which
    the next step reads as windows: ``reads_windows``), then the dense part by the
    forward rules. A rule's step covers consecutive nodes from the one it matched at."""
    steps, k, n_win = [], start, view.n_win
    while k < stop:
        windowed = k < n_win
        step = _match(RULES[WINDOWED if windowed else FORWARD], view, k) if fuse else None
        if step is None or step.last >= stop or (windowed and step.last >= n_win):
            step = window_step(k) if windowed else layer_step(k)
        if k == n_win and n_win:
            steps.append(leave_step(n_win, n_win if getattr(step, "reads_windows", False)
                                    else -1))
        steps.append(step)
        k = step.last + 1
    if n_win and k == n_win:
        steps.append(leave_step(n_win, -1))
    return steps


def reverse_steps(view, top, fuse, layer_step):
    """Steps for nodes ``top - 1`` down to ``view.stop``, each at its last node; a rule's
    step may cover earlier nodes (those whose only reader it covers)."""
    steps, done = [], set()
    for k in range(top - 1, view.stop - 1, -1):
        if k in done:
            continue
        step = _match(RULES[REVERSE], view, k) if fuse else None
        step = layer_step(k) if step is None or done & set(step.nodes) else step
        done.update(step.nodes)
        steps.append(step)
    return steps


def _match(rules, view, k):
    for rule in rules:
        step = rule.match(view, k)
        if step is not None:
            return step
    return None
