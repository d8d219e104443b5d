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

import re
from typing import Any

import pytest
import tensorflow as tf

from aggregathor import gars, ops
from tests.aggregathor.gars.test_properties import CHAINS, F, RULES, make, make_deterministic, smallest_n

# The rules that do decide on the host, why, and the findings each may show: every finding must match one of
# them, so that a new round trip in a listed rule still fails. `ops.row_norms` tests whether a squared norm
# overflowed before it rescales (clipping, arc, centered clipping): without the branch, XLA:CPU keeps (n, d)
# temporaries (3.2x the input's peak memory, measured for a stacked plain-and-scaled sum), and TensorFlow's
# kernels need a second pass and a scaled copy.
ROW_NORMS = "ops.row_norms tests whether any squared norm overflowed"
COND = r"StatelessIf cond(_\d+)?(/cond)* outside XLA"
HOST_DECISIONS = {
    "geometric-median": ("stops its Weiszfeld iterations once they converge, and picks its accurate way to "
                         "centre the Gram product from the data, indexing and counting with what it found",
                         (COND, r"StatelessWhile while outside XLA",
                          r"StridedSlice strided_slice_\d+ takes input [12] .* computed on the device",
                          r"(AddV2|Sub|Maximum|FloorDiv|Less) \S+ on int32 values computed on the device")),
    "centered-clipping": (f"zeroes non-finite rows only when there are some, and per iteration {ROW_NORMS}, "
                          "and divides by the norms first only when one is past sqrt(max)", (COND,)),
    "clipping>median": (ROW_NORMS, (COND,)),
    "arc>median": (ROW_NORMS, (COND,)),
}

BRANCHES = {"If", "StatelessIf", "Case", "StatelessCase"}
LOOPS = {"While", "StatelessWhile"}
CALLS = {"PartitionedCall", "StatefulPartitionedCall"}
PYTHON = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
# Ops whose output's size depends on the data: the host reads it before it can allocate the output.
DATA_SIZED = {"Where", "Unique", "UniqueV2", "UniqueWithCounts", "UniqueWithCountsV2", "DynamicPartition"}
# The inputs that TensorFlow's GPU kernels of these ops keep in host memory (by position; -1 is the last).
HOST_MEMORY_INPUTS = {
    "StridedSlice": (1, 2, 3), "Slice": (1, 2), "Reshape": (1,), "Fill": (0,), "Range": (0, 1, 2),
    "TopKV2": (1,), "Tile": (1,), "Pad": (1,), "PadV2": (1,), "GatherV2": (2,), "OneHot": (1,),
    "Transpose": (1,), "ExpandDims": (1,), "BroadcastTo": (1,), "Split": (0,), "SplitV": (1, 2),
    "ConcatV2": (-1,), "ScatterNd": (2,), "MatrixSetDiagV3": (2,), "MatrixDiagPartV3": (1,),
    "MatrixDiagV3": (1, 2, 3), "Cumsum": (1,), "Cumprod": (1,), "ReverseV2": (1,), "Roll": (1, 2),
    "Sum": (1,), "Max": (1,), "Min": (1,), "Prod": (1,), "Mean": (1,), "All": (1,), "Any": (1,),
    "ArgMax": (1,), "ArgMin": (1,), "UnsortedSegmentSum": (2,), "Empty": (0,), "RandomUniform": (0,),
    "StatelessRandomUniformV2": (0, 3), "StatelessRandomUniformFullIntV2": (0, 3),
    "StatelessRandomGetKeyCounter": (0,),
}
# Elementwise ops whose int32 GPU kernels keep every input and output in host memory.
INT32_ON_HOST = {"AddV2", "Add", "Sub", "Mul", "FloorDiv", "FloorMod", "Maximum", "Minimum", "Neg", "Abs",
                 "Greater", "GreaterEqual", "Less", "LessEqual", "Equal", "NotEqual", "Select", "SelectV2"}
# Ops whose outputs the host knows without reading the device (static shapes).
HOST_SOURCES = {"Const", "Shape", "ShapeN", "Size", "Rank"}
STATEFUL_OR_DEVICE = {"ReadVariableOp", "Placeholder", "_Arg"} | CALLS | BRANCHES | LOOPS


def _node_name(source: str) -> str:
  return source.lstrip("^").split(":")[0]


def _data_inputs(node: Any) -> list[str]:
  """The names of the nodes whose outputs `node` takes (control inputs left out)."""
  return [_node_name(source) for source in node.input if not source.startswith("^")]


def _through_identities(node: Any, nodes: dict[str, Any]) -> Any:
  """The first node at or above `node` that is not an Identity (None if it leaves `nodes`)."""
  while node is not None and node.op == "Identity":
    node = nodes.get(_node_name(node.input[0]))
  return node


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
        inputs = _data_inputs(node) if node is not None else []
        known[name] = node is not None and (node.op in HOST_SOURCES or (
            node.op not in STATEFUL_OR_DEVICE and bool(inputs) and all(host_known(source) for source in inputs)))
      return known[name]

    for node in nodes:
      inputs = _data_inputs(node)
      if node.op in BRANCHES | LOOPS:
        self.found.append(f"{where}: {node.op} {node.name} outside XLA")
      if node.op in PYTHON | DATA_SIZED:
        self.found.append(f"{where}: {node.op} {node.name}, run or sized on the host")
      if node.device:
        self.found.append(f"{where}: {node.op} {node.name} pinned to {node.device}")
      if (node.op in INT32_ON_HOST and node.attr["T"].type == tf.int32.as_datatype_enum
          and not all(host_known(source) for source in inputs)):
        self.found.append(f"{where}: {node.op} {node.name} on int32 values computed on the device")
      for position in HOST_MEMORY_INPUTS.get(node.op, ()):
        position = position % len(inputs) if inputs else 0
        if position < len(inputs) and not host_known(inputs[position]):
          self.found.append(f"{where}: {node.op} {node.name} takes input {position} ({inputs[position]}) "
                            "in host memory, computed on the device")
      if node.op in CALLS:
        callee = self.functions[node.attr["f"].func.name]
        compiled = node.attr["_XlaMustCompile"].b or callee.attr["_XlaMustCompile"].b
        (self.compiled if compiled else self.plain)(callee.node_def, callee.signature.name)
      if node.op in BRANCHES | LOOPS:
        for key in ("then_branch", "else_branch", "cond", "body"):
          if key in node.attr:
            self.plain(self.functions[node.attr[key].func.name].node_def, node.attr[key].func.name)

  def compiled(self, nodes: Any, where: str) -> None:
    """Nodes of a function that XLA compiles."""
    for node in nodes:
      if node.op in PYTHON or node.device:
        self.found.append(f"{where}: {node.op} {node.name}, run on the host or pinned in XLA")
      if node.op in BRANCHES:
        self.found.append(f"{where}: {node.op} {node.name}, a conditional in XLA")
      elif node.op in LOOPS:
        if not self._counted(node, {other.name: other for other in nodes}):
          self.found.append(f"{where}: {node.op} {node.name}, a loop in XLA with no trip count of its own")
        for key in ("cond", "body"):
          self.compiled(self.functions[node.attr[key].func.name].node_def, where)
      elif node.op in CALLS:
        self.compiled(self.functions[node.attr["f"].func.name].node_def, where)

  def _counted(self, loop: Any, around: dict[str, Any]) -> bool:
    """Whether the loop's counter starts at a constant, its condition is `counter < constant`, and its body
    adds 1 to that counter (`around`: the nodes beside the loop, by name)."""
    cond = self.functions[loop.attr["cond"].func.name]
    body = self.functions[loop.attr["body"].func.name]
    cond_nodes = {node.name: node for node in cond.node_def}
    tests = [node for node in cond.node_def if node.op not in {"Const", "Identity", "NoOp"}]
    if len(tests) != 1 or tests[0].op != "Less":
      return False
    counter, bound = _data_inputs(tests[0])[:2]
    arguments = [arg.name for arg in cond.signature.input_arg]
    if counter not in arguments or cond_nodes.get(bound, None) is None or cond_nodes[bound].op != "Const":
      return False
    index = arguments.index(counter)
    start = _through_identities(around.get(_node_name(loop.input[index])), around)
    if start is None or start.op != "Const":
      return False
    body_nodes = {node.name: node for node in body.node_def}
    result = _through_identities(body_nodes.get(_node_name(body.ret[body.signature.output_arg[index].name])),
                                 body_nodes)
    if result is None or result.op not in {"AddV2", "Add"}:
      return False
    operands = [body_nodes.get(_node_name(source)) for source in result.input[:2]]
    own = body.signature.input_arg[index].name
    return (_node_name(result.input[0]) == own and operands[1] is not None and operands[1].op == "Const"
            and tf.make_ndarray(operands[1].attr["value"].tensor) == 1)


def round_trips(name: str, d: int, n: int | None = None) -> list[str]:
  """The host round trips of rule `name` on (n, d) float32 gradients; n defaults to one above the smallest the
  rule accepts."""
  n = smallest_n(name, F) + 1 if n is None else n
  rule, kwargs = make_deterministic(name)
  traced = tf.function(lambda g: rule.aggregate(g, F, **kwargs)).get_concrete_function(
      tf.TensorSpec((n, d), tf.float32))
  graph_def = traced.graph.as_graph_def()
  audit = _Audit(graph_def)
  audit.plain(graph_def.node, name)
  return audit.found


def check_found(name: str, found: list[str]) -> None:
  if name not in HOST_DECISIONS:
    assert not found, "\n".join(found)
    return
  reason, allowed = HOST_DECISIONS[name]
  assert found, f"{name} is listed as deciding on the host ({reason}) but shows no such decision"
  unexpected = [finding for finding in found if not any(re.search(pattern, finding) for pattern in allowed)]
  assert not unexpected, "\n".join(unexpected)


@pytest.mark.parametrize("fused", [False, True], ids=["uncompiled", "fused"])
@pytest.mark.parametrize("name", RULES + CHAINS)
def test_no_round_trip_to_the_host(name, fused):
  check_found(name, round_trips(name, ops.FUSE_MIN_SIZE if fused else 5))


# Past COLUMN_SUMS_MAX_ROWS and SORTING_NETWORK_MAX_ROWS, rules take other ways.
@pytest.mark.parametrize("n", [ops.COLUMN_SUMS_MAX_ROWS + 1, ops.SORTING_NETWORK_MAX_ROWS + 1])
@pytest.mark.parametrize("name", RULES + CHAINS)
def test_no_round_trip_to_the_host_with_many_workers(name, n):
  rule, kwargs = make(name)
  try:
    rule.check(n, F, **kwargs)
  except ValueError as error:
    pytest.skip(f"{name} does not take n={n}: {error}")
  check_found(name, round_trips(name, 5, n))


def test_the_audit_sees_each_kind_of_round_trip():
  # Outside XLA: a branch, a slice bound and int32 arithmetic from the data, Python, a pinned op. Inside: a
  # conditional, a loop with no fixed bound, and one whose counter starts from the data.
  def rule_like(g: tf.Tensor) -> tf.Tensor:
    column = tf.cond(tf.reduce_all(g > 0), lambda: g[0], lambda: g[1])
    count = tf.cast(tf.reduce_sum(g[:, 0]), tf.int32) + 1
    with tf.device("/cpu:0"):
      pinned = tf.identity(column)
    return pinned[:count] + tf.py_function(lambda x: x, [column[:1]], tf.float32)

  @tf.function(jit_compile=True, autograph=False)
  def compiled(g: tf.Tensor) -> tf.Tensor:
    g = tf.cond(g[0, 0] > 0, lambda: g, lambda: -g)
    counted = tf.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, x * 2), (0, g))[1]
    from_data = tf.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, x * 2),
                              (tf.cast(g[0, 0], tf.int32), counted))[1]
    return tf.while_loop(lambda x: tf.reduce_sum(x) < 100, lambda x: x * 2, (from_data,))[0]

  graph_def = tf.function(lambda g: (rule_like(g), compiled(g))).get_concrete_function(
      tf.TensorSpec((3, 4), tf.float32)).graph.as_graph_def()
  audit = _Audit(graph_def)
  audit.plain(graph_def.node, "probe")
  kinds = "\n".join(audit.found)
  assert "StatelessIf cond outside XLA" in kinds
  assert "StridedSlice" in kinds and "input 2" in kinds
  assert "AddV2 add on int32 values computed on the device" in kinds
  assert "pinned to" in kinds and "EagerPyFunc" in kinds
  assert "a conditional in XLA" in kinds
  assert kinds.count("no trip count of its own") == 2, audit.found
