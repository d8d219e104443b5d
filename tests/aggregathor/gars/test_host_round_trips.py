"""Every rule runs on the device that holds the gradients with no round trip to the host, but those in
HOST_DECISIONS.

Checked on the traced graph, so that it holds on a machine with no GPU (CI has none). On a GPU, three things
make TensorFlow or XLA wait for the device and copy a value back to the host:
- a data-dependent branch or loop outside XLA (`tf.cond`, `tf.while_loop`): the host reads the predicate;
- inside XLA, a conditional, or a while loop whose trip count XLA cannot read off the loop (a counter
  compared to a constant and incremented by one): XLA:GPU reads the predicate on the host;
- outside XLA, an input that a GPU kernel keeps in host memory (a slice's bounds, a reshape's shape, top-k's
  k, ...) computed from the gradients: TensorFlow copies it from the device before the kernel runs.
Each rule is traced at a size below `ops.FUSE_MIN_SIZE` (its ops uncompiled) and at one above (its `ops.fused`
parts compiled), and only traced: nothing runs.
"""

from __future__ import annotations

from typing import Any

import pytest
import tensorflow as tf

from aggregathor import gars, ops
from tests.aggregathor.gars.test_properties import CHAINS, F, RULES, make, smallest_n

# Rules whose algorithm decides on the host, and why; each must still show such a decision (so that the
# list stays true).
# The rules that do decide on the host, and why; each must still show such a decision, so that the list stays
# true. `ops.row_norms` tests whether a squared norm overflowed before it rescales (clipping, arc, centered
# clipping): without the branch, XLA:CPU keeps (n, d) temporaries (3.2x the input's peak memory, measured for
# a stacked plain-and-scaled sum), and TensorFlow's kernels need a second pass and a scaled copy.
ROW_NORMS = "ops.row_norms tests whether any squared norm overflowed"
HOST_DECISIONS = {
    "geometric-median": "stops its Weiszfeld iterations once they converge, and picks its accurate way to "
                        "centre the Gram product from the data",
    "centered-clipping": f"zeroes non-finite rows only when there are some, and per iteration {ROW_NORMS}, and "
                         "divides by the norms first only when one is past sqrt(max)",
    "clipping>median": ROW_NORMS,
    "arc>median": ROW_NORMS,
}

BRANCHES = {"If", "StatelessIf", "Case", "StatelessCase"}
LOOPS = {"While", "StatelessWhile"}
CALLS = {"PartitionedCall", "StatefulPartitionedCall"}
# The inputs that TensorFlow's GPU kernels of these ops keep in host memory (by position).
HOST_MEMORY_INPUTS = {
    "StridedSlice": (1, 2, 3), "Slice": (1, 2), "Reshape": (1,), "Fill": (0,), "Range": (0, 1, 2),
    "TopKV2": (1,), "Tile": (1,), "Pad": (1,), "PadV2": (1,), "GatherV2": (2,), "OneHot": (1,),
    "Transpose": (1,), "ExpandDims": (1,), "BroadcastTo": (1,), "Split": (0,), "SplitV": (1, 2),
    "ScatterNd": (2,), "MatrixSetDiagV3": (2,), "MatrixDiagPartV3": (1,), "MatrixDiagV3": (1, 2, 3),
    "Cumsum": (1,), "ReverseV2": (1,), "Roll": (1, 2), "Sum": (1,), "Max": (1,), "Min": (1,), "Prod": (1,),
    "Mean": (1,), "All": (1,), "Any": (1,), "ArgMax": (1,), "ArgMin": (1,), "RandomUniform": (0,),
    "StatelessRandomUniformV2": (0,), "StatelessRandomGetKeyCounter": (0,),
}
# Ops whose outputs the host knows without reading the device (static shapes).
HOST_SOURCES = {"Const", "Shape", "ShapeN", "Size", "Rank"}
STATEFUL_OR_DEVICE = {"ReadVariableOp", "Placeholder", "_Arg"} | CALLS | BRANCHES | LOOPS


def _node_name(source: str) -> str:
  return source.lstrip("^").split(":")[0]


class _Audit:
  """Walks a traced graph and its function library, collecting every host round trip it finds."""

  def __init__(self, graph_def: Any) -> None:
    self.functions = {function.signature.name: function for function in graph_def.library.function}
    self.found: list[str] = []

  def plain(self, nodes: Any, where: str) -> None:
    """Nodes run by TensorFlow's executor (outside XLA)."""
    by_name = {node.name: node for node in nodes}
    known: dict[str, bool] = {}

    def host_known(name: str) -> bool:
      if name not in known:
        node = by_name.get(name)  # None: a function argument, on the device
        known[name] = node is not None and (node.op in HOST_SOURCES or (
            node.op not in STATEFUL_OR_DEVICE and all(
                host_known(_node_name(source)) for source in node.input if not source.startswith("^"))
            and any(not source.startswith("^") for source in node.input)))
      return known[name]

    for node in nodes:
      if node.op in BRANCHES | LOOPS:
        self.found.append(f"{where}: {node.op} {node.name} outside XLA")
      inputs = [source for source in node.input if not source.startswith("^")]
      for position in HOST_MEMORY_INPUTS.get(node.op, ()):
        if position < len(inputs) and not host_known(_node_name(inputs[position])):
          self.found.append(f"{where}: {node.op} {node.name} takes input {position} ({inputs[position]}) "
                            "in host memory, computed on the device")
      if node.op in CALLS:
        callee = self.functions[node.attr["f"].func.name]
        compiled = node.attr["_XlaMustCompile"].b or callee.attr["_XlaMustCompile"].b
        (self.compiled if compiled else self.plain)(callee.node_def, callee.signature.name)

  def compiled(self, nodes: Any, where: str) -> None:
    """Nodes of a function that XLA compiles."""
    for node in nodes:
      if node.op in BRANCHES:
        self.found.append(f"{where}: {node.op} {node.name}, a conditional in XLA")
      elif node.op in LOOPS:
        if not self._counted(node):
          self.found.append(f"{where}: {node.op} {node.name}, a loop in XLA with no trip count of its own")
        for key in ("cond", "body"):
          self.compiled(self.functions[node.attr[key].func.name].node_def, where)
      elif node.op in CALLS:
        self.compiled(self.functions[node.attr["f"].func.name].node_def, where)

  def _counted(self, loop: Any) -> bool:
    """Whether the loop's condition is `counter < constant` and its body adds 1 to that counter."""
    cond = self.functions[loop.attr["cond"].func.name]
    body = self.functions[loop.attr["body"].func.name]
    cond_nodes = {node.name: node for node in cond.node_def}
    tests = [node for node in cond.node_def if node.op not in {"Const", "Identity", "NoOp"}]
    if len(tests) != 1 or tests[0].op != "Less":
      return False
    counter, bound = (_node_name(source) for source in tests[0].input[:2])
    arguments = [arg.name for arg in cond.signature.input_arg]
    if counter not in arguments or cond_nodes.get(bound, None) is None or cond_nodes[bound].op != "Const":
      return False
    index = arguments.index(counter)
    body_nodes = {node.name: node for node in body.node_def}
    result = body_nodes.get(_node_name(body.ret[body.signature.output_arg[index].name]))
    while result is not None and result.op == "Identity":
      result = body_nodes.get(_node_name(result.input[0]))
    if result is None or result.op not in {"AddV2", "Add"}:
      return False
    operands = [body_nodes.get(_node_name(source)) for source in result.input[:2]]
    own = body.signature.input_arg[index].name
    return (_node_name(result.input[0]) == own and operands[1] is not None and operands[1].op == "Const"
            and tf.make_ndarray(operands[1].attr["value"].tensor) == 1)


def round_trips(name: str, d: int) -> list[str]:
  """The host round trips of rule `name` on (n, d) float32 gradients, n one above the smallest it accepts."""
  n = smallest_n(name, F) + 1
  rule, kwargs = make(name)
  if name.startswith("bucketing"):
    kwargs = {"seed": 0}
  traced = tf.function(lambda g: rule.aggregate(g, F, **kwargs)).get_concrete_function(
      tf.TensorSpec((n, d), tf.float32))
  graph_def = traced.graph.as_graph_def()
  audit = _Audit(graph_def)
  audit.plain(graph_def.node, name)
  return audit.found


@pytest.mark.parametrize("fused", [False, True], ids=["uncompiled", "fused"])
@pytest.mark.parametrize("name", RULES + CHAINS)
def test_no_round_trip_to_the_host(name, fused):
  d = ops.FUSE_MIN_SIZE if fused else 5
  found = round_trips(name, d)
  if name in HOST_DECISIONS:
    assert found, f"{name} is listed as deciding on the host ({HOST_DECISIONS[name]}) but shows no such decision"
  else:
    assert not found, "\n".join(found)


def test_the_audit_sees_each_kind_of_round_trip():
  # A branch outside XLA, a dynamic slice bound, a conditional and an uncounted loop inside XLA.
  def rule_like(g: tf.Tensor) -> tf.Tensor:
    column = tf.cond(tf.reduce_all(g > 0), lambda: g[0], lambda: g[1])
    return column[:tf.cast(tf.reduce_sum(g[:, 0]), tf.int32)]

  @tf.function(jit_compile=True, autograph=False)
  def compiled(g: tf.Tensor) -> tf.Tensor:
    g = tf.cond(g[0, 0] > 0, lambda: g, lambda: -g)
    counted = tf.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, x * 2), (0, g))[1]
    return tf.while_loop(lambda x: tf.reduce_sum(x) < 100, lambda x: x * 2, (counted,))[0]

  graph_def = tf.function(lambda g: (rule_like(g), compiled(g))).get_concrete_function(
      tf.TensorSpec((3, 4), tf.float32)).graph.as_graph_def()
  audit = _Audit(graph_def)
  audit.plain(graph_def.node, "probe")
  kinds = " ".join(audit.found)
  assert "StatelessIf cond outside XLA" in kinds
  assert "StridedSlice" in kinds and "input 2" in kinds
  assert "a conditional in XLA" in kinds
  assert kinds.count("no trip count of its own") == 1, audit.found
