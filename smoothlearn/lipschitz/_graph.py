r"""Bounds of a traced forward: a torch.fx graph walk, one bound per node.

``forward`` is traced with :func:`torch.fx.symbolic_trace` (modules that have
a layer rule stay leaves of the graph).  Walking the nodes in execution order,
every node :math:`v` gets a number :math:`L_v`, an upper bound on the l2
Lipschitz constant of the map from the model's input :math:`x` to the value
of :math:`v` (per input row; batch rows are independent in eval mode):

* the input: :math:`L = 1`; nodes whose value does not depend on the input's
  values (parameters, buffers, shapes, constants): :math:`L = 0`;
* a map :math:`h` applied to one input-dependent node :math:`u`:
  :math:`L_v = \mathrm{Lip}(h)\, L_u` (chain rule), with :math:`\mathrm{Lip}(h)`
  from the layer rules for modules and from the table below for functions;
* a sum of input-dependent nodes :math:`v = \sum_i c_i u_i` (residual
  additions, ``a - b``): :math:`L_v \le \sum_i |c_i|\, s_i L_{u_i}`, where
  :math:`s_i = \sqrt{\#v / \#u_i}` covers broadcasting (an operand that is
  broadcast repeats each of its entries :math:`\#v / \#u_i` times);
* a product or quotient with a constant :math:`c`:
  :math:`\max|c|\, s\, L_u` or :math:`s L_u / \min|c|`; a product of two
  input-dependent nodes is refused;
* a concatenation: :math:`\sqrt{\sum_i L_{u_i}^2}`.

Anything else raises a ``ValueError`` naming the node and the operation:
a missing rule is never read as a small constant.
"""

from __future__ import annotations

import builtins
import inspect
import math
import operator
from types import SimpleNamespace

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.node import Node, map_aggregate
from torch.nn.utils.parametrize import type_before_parametrizations

from ._operators import _ROUNDING_MARGIN
from ._rules import _CONSTANT_LAYERS, _RULES, _rule_linear

__all__: list[str] = []


def _is_torch_layer(module: nn.Module) -> bool:
    """A layer of torch.nn (not a container): a leaf of every fx trace."""
    typ = type_before_parametrizations(module)
    return typ.__module__.startswith(("torch.nn", "torch.ao.nn")) and not issubclass(
        typ, nn.Sequential | nn.ModuleList | nn.ModuleDict
    )


class _Tracer(torch.fx.Tracer):
    """Keeps the modules that have a rule (built-in or the user's) as leaves."""

    def __init__(self, user_types: tuple[type, ...]):
        super().__init__()
        self.user_types = user_types

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self.user_types and isinstance(m, self.user_types):
            return True
        typ = type_before_parametrizations(m)
        if typ in _RULES and typ is not nn.Sequential:
            return True
        return typ in _CONSTANT_LAYERS or _is_torch_layer(m)


def _trace(module: nn.Module, user_types: tuple[type, ...]) -> torch.fx.GraphModule:
    """fx graph of ``module.forward`` with one input; defaults specialised."""
    params = list(inspect.signature(module.forward).parameters.values())
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    required = [p.name for p in positional if p.default is inspect.Parameter.empty]
    if len(required) != 1 or positional[0].name != required[0]:
        raise TypeError(
            f"its forward takes the inputs {required}, not one input tensor"
        )
    concrete = {p.name: p.default for p in positional[1:]}
    tracer = _Tracer(user_types)
    graph = tracer.trace(module, concrete_args=concrete or None)
    return torch.fx.GraphModule(tracer.root, graph, type(module).__name__)


def _describe(node: Node) -> str:
    """'the function torch.nn.functional.relu' and the like, for messages."""
    target = node.target
    if node.op == "call_method":
        return f"the method Tensor.{target}"
    if node.op == "call_module":
        return f"the module {target!r}"
    name = getattr(target, "__name__", repr(target))
    mod = getattr(target, "__module__", None)
    if mod in ("_operator", "operator"):
        mod = "operator"
    elif mod is None or mod.startswith("torch._C"):
        # builtins such as torch.relu or F.avg_pool2d: the public alias
        for public, prefix in ((F, "torch.nn.functional"), (torch, "torch")):
            if getattr(public, name, None) is target:
                mod = prefix
                break
    if mod == "torch.nn.functional" and name == "fn":  # boolean_dispatch
        name = node.name.rstrip("_0123456789") or name
    return f"the function {mod}.{name}" if mod else f"the function {name}"


# ---------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------


class _Walk:
    """Bounds of every node of one traced ``forward``.

    Parameters
    ----------
    estimator : SpectralProductLipschitz
    ctx : _Context
        The layer-rule context (recursion into leaf modules, shapes).
    module : nn.Module
        The traced module (its own submodules are the graph's).
    gm : torch.fx.GraphModule
    args : tuple or None
        A sample of the forward's positional arguments (batch of one), or
        None: then only the values of constant nodes are known, and rules
        that need a shape raise.
    """

    def __init__(self, estimator, ctx, module, gm, args):
        self.estimator = estimator
        self.ctx = ctx
        self.module = module
        self.gm = gm
        self.args = args
        self.owner = type(module).__name__
        self.nodes = list(gm.graph.nodes)
        self.position = {n: i for i, n in enumerate(self.nodes)}
        self.placeholders = [n for n in self.nodes if n.op == "placeholder"]
        self.value: dict[Node, object] = {}  # concrete values, where known
        self.lip: dict[Node, float] = {}  # bounds of input-dependent nodes
        self.tuples: set[Node] = set()  # input-dependent tuples (split, chunk)
        # linear node -> its batch norm, and back
        self.fused = self._conv_batchnorm_pairs()
        self.fused_bn = {bn: lin for lin, bn in self.fused.items()}

    # -- helpers the rules use ---------------------------------------------

    def dep(self, a) -> bool:
        """Whether ``a`` (a node or a constant) depends on the input's values."""
        return isinstance(a, Node) and a in self.lip

    def L(self, a) -> float:
        return self.lip[a] if self.dep(a) else 0.0

    def where(self, node: Node) -> str:
        """'the traced forward of 'Net'', or of the submodule the node is in."""
        stack = node.meta.get("nn_module_stack") or {}
        if node.op == "call_module":  # the leaf itself is the last entry
            stack = dict(list(stack.items())[:-1])
        if stack:
            path, typ = list(stack.values())[-1]
            name = getattr(typ, "__name__", str(typ))
            return (
                f"the forward of {name!r} (submodule {path!r} of the traced "
                f"{self.owner!r})"
            )
        return f"the traced forward of {self.owner!r}"

    def fail(self, node: Node, why: str) -> ValueError:
        return ValueError(
            f"SpectralProductLipschitz cannot bound node {node.name!r} "
            f"({_describe(node)}) in {self.where(node)}: {why}"
        )

    def get(self, a, node: Node):
        """Concrete value of the argument ``a`` of ``node`` (nodes resolved)."""
        try:
            return map_aggregate(
                a, lambda x: self.value[x] if isinstance(x, Node) else x
            )
        except KeyError:
            raise ValueError(
                "SpectralProductLipschitz needs the input shape to bound node "
                f"{node.name!r} ({_describe(node)}) in {self.where(node)}: pass "
                "X or input_shape."
            ) from None

    def numel(self, a, node: Node) -> int:
        v = self.get(a, node)
        if not torch.is_tensor(v):
            raise self.fail(node, f"expected a tensor, got {type(v).__name__}")
        return v.numel()

    def spread(self, operand, node: Node) -> float:
        """sqrt(#output / #operand): the gain of broadcasting ``operand``."""
        ratio = self.numel(node, node) / max(1, self.numel(operand, node))
        return math.sqrt(max(1.0, ratio))

    def arg(self, node: Node, i: int, name: str, default=None):
        """Positional-or-keyword argument ``name`` at position ``i``."""
        if len(node.args) > i:
            return node.args[i]
        return node.kwargs.get(name, default)

    def only(self, node: Node, operand) -> float:
        """L of ``operand``, checking it is the node's only input-dependent one.

        (``x.view_as(y)`` and the like read only the shape or dtype of ``y``.)
        """
        if node.op == "call_method" and node.target in _READS_SHAPE_OF_OTHER:
            return self.L(operand) if self.dep(operand) else self._not_dep(node)
        others = [n for n in node.all_input_nodes if self.dep(n) and n is not operand]
        if others or not self.dep(operand):
            raise self.fail(
                node,
                "it combines several input-dependent tensors "
                f"({', '.join(n.name for n in node.all_input_nodes if self.dep(n))})",
            )
        return self.lip[operand]

    def _not_dep(self, node: Node) -> float:
        raise self.fail(
            node, "its input-dependent operand is not the tensor it acts on"
        )

    def module_bound(self, module: nn.Module, node: Node, operand) -> float:
        """The layer rule of ``module``, with this call's input/output shapes."""
        shapes = None
        if operand in self.value and node in self.value:
            x, y = self.value[operand], self.value[node]
            if torch.is_tensor(x) and torch.is_tensor(y):
                shapes = (tuple(x.shape[1:]), tuple(y.shape[1:]))
        with self.ctx.call_shapes(module, shapes):
            return float(self.estimator._bound(module, self.ctx))

    # -- the walk -----------------------------------------------------------

    def run(self) -> float:
        for node in self.nodes:
            if node.op == "output":
                return self._output(node)
            self._evaluate(node)
            if node.op == "placeholder":
                if node is self.nodes[0]:
                    self.lip[node] = 1.0
                continue
            deps = [n for n in node.all_input_nodes if self.dep(n)]
            if not deps or node.op == "get_attr" or _is_shape_query(node):
                continue  # a constant on the set of inputs of one shape
            self._check_inplace(node)
            self.lip[node] = self._bound(node)
            if _returns_tuple(node):
                self.tuples.add(node)
        raise self.fail(self.nodes[-1], "the graph has no output")  # pragma: no cover

    def _evaluate(self, node: Node) -> None:
        if node.op == "placeholder":
            i = self.placeholders.index(node)
            if self.args is not None and i < len(self.args):
                self.value[node] = self.args[i]
            elif node.args:  # a specialised default
                self.value[node] = node.args[0]
            return
        if node.op == "get_attr":
            obj = self.gm
            for part in node.target.split("."):
                obj = getattr(obj, part)
            self.value[node] = obj
            return
        if node.op not in ("call_function", "call_method", "call_module"):
            return
        try:
            args = map_aggregate(
                node.args, lambda x: self.value[x] if isinstance(x, Node) else x
            )
            kwargs = map_aggregate(
                node.kwargs, lambda x: self.value[x] if isinstance(x, Node) else x
            )
        except KeyError:
            return  # an input without a value (no sample)
        if node.op == "call_function":
            out = node.target(*args, **kwargs)
        elif node.op == "call_method":
            out = getattr(args[0], node.target)(*args[1:], **kwargs)
        else:
            out = self.gm.get_submodule(node.target)(*args, **kwargs)
        self.value[node] = out

    def _output(self, node: Node) -> float:
        (out,) = node.args
        if isinstance(out, Node):
            if out in self.tuples:
                raise self.fail(node, "the forward returns a tuple, not logits")
            return self.L(out)
        if any(self.dep(n) for n in node.all_input_nodes):
            raise self.fail(
                node,
                f"the forward returns a {type(out).__name__}; bound a module "
                "that returns the logits tensor",
            )
        return 0.0

    def _check_inplace(self, node: Node) -> None:
        """An in-place operation must not change what a later node reads."""
        if not _is_inplace(node, self.gm) or not node.args:
            return
        target = node.args[0]
        if not isinstance(target, Node):
            return
        if not self.dep(target):
            raise self.fail(
                node, "it writes input-dependent values into a constant in place"
            )
        later = [
            u.name
            for u in target.users
            if u is not node and self.position[u] > self.position[node]
        ]
        if later:
            raise self.fail(
                node,
                f"it modifies {target.name!r} in place, which {', '.join(later)} "
                "read(s) afterwards; the graph would not show the change",
            )

    def _bound(self, node: Node) -> float:
        if node.op == "call_module":
            return self._module_node(node)
        if node.op == "call_function":
            rule = _FUNCTION_RULES.get(node.target)
            if node.target is builtins.getattr:
                rule = _rule_getattr
        else:
            rule = _METHOD_RULES.get(node.target)
        if rule is None:
            raise self.fail(
                node,
                "no rule for this operation; register a rule for the module that "
                "performs it (rules={ModuleType: fn})",
            )
        return float(rule(self, node))

    def _module_node(self, node: Node) -> float:
        sub = self.gm.get_submodule(node.target)
        if len(node.args) != 1 or node.kwargs:
            raise self.fail(node, "a module call with several arguments")
        (operand,) = node.args
        L_in = self.only(node, operand)
        if node in self.fused:
            if self._fusable(node, sub):
                return L_in  # bounded together with its batch norm, below
            del self.fused_bn[self.fused.pop(node)]
        lin = self.fused_bn.get(node)
        if lin is not None:  # L_in is that of the conv's input
            fused = _fuse(self.gm.get_submodule(lin.target), sub)
            return L_in * self.module_bound(fused, lin, lin.args[0])
        return L_in * self.module_bound(sub, node, operand)

    def _fusable(self, node: Node, lin: nn.Module) -> bool:
        """BatchNorm1d scales dim 1: for a linear layer, a 2-D output only."""
        if type_before_parametrizations(lin) is not nn.Linear:
            return True
        value = self.value.get(node)
        return torch.is_tensor(value) and value.dim() == 2

    def _conv_batchnorm_pairs(self) -> dict[Node, Node]:
        """Linear maps followed only by an eval batch norm: bounded as one map.

        ``BN(W x) = diag(s) W x + const`` with ``s = gamma / sqrt(var + eps)``,
        and ``||diag(s) W|| <= max|s| ||W||``: the fused bound is never larger.
        """
        rules = tuple(self.estimator.rules or ())
        pairs = {}
        for node in self.nodes:
            if node.op != "call_module" or len(node.args) != 1:
                continue
            bn = self.gm.get_submodule(node.target)
            prev = node.args[0]
            if (
                type(bn) not in (nn.BatchNorm1d, nn.BatchNorm2d)
                or bn.running_var is None
                or not isinstance(prev, Node)
                or prev.op != "call_module"
                or len(prev.users) != 1
            ):
                continue
            lin = self.gm.get_submodule(prev.target)
            if type_before_parametrizations(lin) not in (
                nn.Linear,
                nn.Conv1d,
                nn.Conv2d,
            ) or (rules and (isinstance(lin, rules) or isinstance(bn, rules))):
                continue
            pairs[prev] = node
        return pairs

    def check_trace(self) -> None:
        """The graph reproduces the module's forward at a random input."""
        if self.args is None or not torch.is_tensor(self.args[0]):
            return
        x = self.args[0]
        gen = torch.Generator().manual_seed(0)
        noise = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        xs = (x + noise.to(device=x.device, dtype=x.dtype)).detach()
        rest = list(self.args[1:])
        want = self.module(xs.clone(), *rest)
        got = self.gm(xs.clone(), *rest)
        if not (torch.is_tensor(want) and torch.is_tensor(got)):
            return
        scale = float(want.abs().max()) if want.numel() else 0.0
        if got.shape != want.shape or not torch.allclose(
            got, want, rtol=1e-4, atol=1e-5 * (1.0 + scale)
        ):
            raise ValueError(
                f"SpectralProductLipschitz: the torch.fx graph of {self.owner!r} "
                "does not reproduce its forward (an in-place operation on a "
                "tensor that is read elsewhere, or a forward with side effects); "
                f"register a rule with rules={{{self.owner}: fn}}."
            )


def _fuse(lin: nn.Module, bn: nn.Module) -> nn.Module:
    """The linear part of ``bn(lin(x))`` as one float64 module, on the CPU."""
    W = lin.weight.detach().to("cpu", torch.float64)
    scale = 1.0 / torch.sqrt(bn.running_var.detach().to("cpu", torch.float64) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().to("cpu", torch.float64)
    W = scale.reshape(-1, *([1] * (W.dim() - 1))) * W
    typ = type_before_parametrizations(lin)
    if typ is nn.Linear:
        fused = nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=torch.float64)
    else:
        fused = typ(
            lin.in_channels, lin.out_channels, lin.kernel_size, stride=lin.stride,
            padding=lin.padding, dilation=lin.dilation, groups=lin.groups,
            bias=False, padding_mode=lin.padding_mode, dtype=torch.float64,
        )  # fmt: skip
    with torch.no_grad():
        fused.weight.copy_(W)
    return fused


def _graph_bound(estimator, ctx, module: nn.Module, gm, args) -> float:
    walk = _Walk(estimator, ctx, module, gm, args)
    bound = walk.run()  # unknown operations are reported first
    walk.check_trace()
    return bound


# ---------------------------------------------------------------------------
# Classification of nodes
# ---------------------------------------------------------------------------

# Values that depend on the input's shape only: constants on the inputs of
# one shape (the Lipschitz constant is for one input shape).
_SHAPE_METHODS = {
    "size", "dim", "numel", "nelement", "ndimension", "get_device",
    "new_zeros", "new_ones", "new_full", "new_tensor",
}  # fmt: skip
_SHAPE_ATTRIBUTES = {"shape", "ndim", "dtype", "device", "is_cuda", "layout"}
_SHAPE_FUNCTIONS = {builtins.len, torch.zeros_like, torch.ones_like, torch.full_like}


def _is_shape_query(node: Node) -> bool:
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    if node.op == "call_function":
        if node.target is builtins.getattr:
            return node.args[1] in _SHAPE_ATTRIBUTES
        return node.target in _SHAPE_FUNCTIONS
    return False


_READS_SHAPE_OF_OTHER = {"view_as", "reshape_as", "type_as", "expand_as"}

_INPLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}


def _is_inplace(node: Node, gm) -> bool:
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.startswith("_")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return (
            node.target in _INPLACE_OPERATORS
            or node.kwargs.get("inplace") is True
            or (name.endswith("_") and not name.startswith("_"))
        )
    if node.op == "call_module":
        return getattr(gm.get_submodule(node.target), "inplace", False) is True
    return False


def _returns_tuple(node: Node) -> bool:
    key = node.target
    return key in _SPLITS or (node.op == "call_method" and key in _SPLIT_METHODS)


# ---------------------------------------------------------------------------
# Rules for functions and methods: rule(walk, node) -> L of the node
# ---------------------------------------------------------------------------


def _operand(walk, node):
    """The tensor a one-operand function or method acts on."""
    return walk.arg(node, 0, "input", node.kwargs.get("self"))


def _rule_same(walk, node) -> float:
    """Isometries and restrictions (reshape, permute, slicing): ``L`` unchanged."""
    return walk.only(node, _operand(walk, node))


def _rule_replicate(walk, node) -> float:
    """expand / repeat / tile: every entry copied ``#out / #in`` times."""
    x = _operand(walk, node)
    if node.target in ("repeat_interleave", torch.repeat_interleave):
        reps = walk.arg(node, 1, "repeats")
        if isinstance(reps, Node) or torch.is_tensor(reps):
            raise walk.fail(node, "repeats given as a tensor may be uneven")
    return walk.only(node, x) * walk.spread(x, node)


def _constant_rule(c: float):
    def rule(walk, node):
        return c * walk.only(node, _operand(walk, node))

    return rule


def _rule_leaky_relu(walk, node) -> float:
    slope = walk.get(walk.arg(node, 1, "negative_slope", 0.01), node)
    return max(1.0, abs(float(slope))) * walk.only(node, _operand(walk, node))


def _rule_elu(walk, node) -> float:
    alpha = walk.get(walk.arg(node, 1, "alpha", 1.0), node)
    return max(1.0, float(alpha)) * walk.only(node, _operand(walk, node))


def _rule_gelu(walk, node) -> float:
    approximate = walk.get(walk.arg(node, 1, "approximate", "none"), node)
    module = nn.GELU(approximate=approximate)
    return _RULES[nn.GELU](module, None) * walk.only(node, _operand(walk, node))


def _rule_prelu(walk, node) -> float:
    weight = walk.get(walk.arg(node, 1, "weight"), node)
    return max(1.0, float(weight.detach().abs().max())) * walk.only(
        node, _operand(walk, node)
    )


def _rule_dropout(walk, node) -> float:
    training = walk.get(walk.arg(node, 2, "training", True), node)
    if training:
        raise walk.fail(
            node,
            "functional dropout with training=True is random at evaluation; "
            "pass training=self.training",
        )
    return walk.only(node, _operand(walk, node))


def _rule_pad(walk, node) -> float:
    mode = walk.get(walk.arg(node, 2, "mode", "constant"), node)
    if mode != "constant":
        raise walk.fail(node, f"padding mode {mode!r} repeats entries")
    return walk.only(node, _operand(walk, node))


def _rule_getitem(walk, node) -> float:
    obj, index = node.args
    if any(walk.dep(n) for n in node.all_input_nodes if n is not obj):
        raise walk.fail(node, "the index depends on the input")
    if obj in walk.tuples:  # one piece of a split: a restriction
        return walk.L(obj)
    if not _basic_index(index):
        raise walk.fail(
            node, "only basic indexing (ints, slices, None, ...) is a restriction"
        )
    return walk.L(obj)


def _basic_index(index) -> bool:
    if isinstance(index, tuple):
        return all(_basic_index(i) for i in index)
    if isinstance(index, Node):
        return False  # a tensor or list computed in the graph
    return index is None or index is Ellipsis or isinstance(index, int | slice)


def _rule_getattr(walk, node) -> float:
    name = node.args[1]
    if name in ("T", "mT", "data"):
        return walk.only(node, node.args[0])
    raise walk.fail(node, f"no rule for the attribute {name!r}")


def _sum_terms(walk, node, sign: float):
    """(operand, coefficient) pairs of ``a + alpha b`` (sign -1: subtraction)."""
    a = walk.arg(node, 0, "input", node.kwargs.get("self"))
    b = walk.arg(node, 1, "other")
    alpha = walk.get(node.kwargs.get("alpha", 1), node)
    return [(a, 1.0), (b, sign * float(alpha))]


def _rule_linear_combination(walk, node, terms) -> float:
    total = 0.0
    for operand, coeff in terms:
        if walk.dep(operand):
            total += abs(coeff) * walk.L(operand) * walk.spread(operand, node)
    return total


def _rule_add(walk, node) -> float:
    return _rule_linear_combination(walk, node, _sum_terms(walk, node, 1.0))


def _rule_sub(walk, node) -> float:
    return _rule_linear_combination(walk, node, _sum_terms(walk, node, -1.0))


def _rule_rsub(walk, node) -> float:  # other - alpha * input
    (a, _), (b, c) = _sum_terms(walk, node, 1.0)
    return _rule_linear_combination(walk, node, [(a, c), (b, 1.0)])


def _abs_max(walk, node, c, invert: bool = False) -> float:
    v = walk.get(c, node)
    if torch.is_tensor(v):
        v = v.detach().to("cpu", torch.float64).abs()
        if v.numel() == 0:
            return 0.0
        m = float(v.min()) if invert else float(v.max())
    else:
        m = abs(float(v))
    if invert:
        return math.inf if m == 0 else 1.0 / m
    return m


def _rule_mul(walk, node) -> float:
    a = walk.arg(node, 0, "input", node.kwargs.get("self"))
    b = walk.arg(node, 1, "other")
    if walk.dep(a) and walk.dep(b):
        raise walk.fail(node, "a product of two input-dependent tensors")
    x, c = (a, b) if walk.dep(a) else (b, a)
    factor = _abs_max(walk, node, c) * (1.0 + _ROUNDING_MARGIN)
    return factor * walk.only(node, x) * walk.spread(x, node)


def _rule_div(walk, node) -> float:
    a = walk.arg(node, 0, "input", node.kwargs.get("self"))
    b = walk.arg(node, 1, "other")
    if walk.get(node.kwargs.get("rounding_mode"), node) is not None:
        raise walk.fail(node, "rounded division is not continuous")
    if walk.dep(b):
        raise walk.fail(node, "a division by an input-dependent tensor")
    factor = _abs_max(walk, node, b, invert=True) * (1.0 + _ROUNDING_MARGIN)
    return factor * walk.only(node, a) * walk.spread(a, node)


def _matrix_bound(walk, node, W) -> float:
    W = walk.get(W, node)
    if not torch.is_tensor(W) or W.dim() not in (1, 2):
        raise walk.fail(node, "the constant factor must be a vector or a matrix")
    if W.dim() == 1:
        return float(W.detach().to("cpu", torch.float64).norm()) * (
            1 + _ROUNDING_MARGIN
        )
    return _rule_linear(SimpleNamespace(weight=W), walk.ctx)


def _rule_matmul(walk, node) -> float:
    a = walk.arg(node, 0, "input", node.kwargs.get("self"))
    b = walk.arg(node, 1, "other", node.kwargs.get("mat2"))
    if walk.dep(a) and walk.dep(b):
        raise walk.fail(node, "a product of two input-dependent tensors")
    # x @ W acts on the rows of x by W^T; W @ x on its columns by W.
    x, W = (a, b) if walk.dep(a) else (b, a)
    return _matrix_bound(walk, node, W) * walk.only(node, x)


def _rule_linear_function(walk, node) -> float:
    x, W = _operand(walk, node), walk.arg(node, 1, "weight")
    if walk.dep(W):
        raise walk.fail(node, "the weight depends on the input")
    return _matrix_bound(walk, node, W) * walk.only(node, x)


def _rule_conv_function(walk, node) -> float:
    x, W = _operand(walk, node), walk.arg(node, 1, "weight")
    L_in = walk.only(node, x)
    W = walk.get(W, node).detach().to("cpu", torch.float64)
    get = walk.get
    groups = get(walk.arg(node, 6, "groups", 1), node)
    cls = {3: nn.Conv1d, 4: nn.Conv2d}.get(W.dim())
    if cls is None:
        raise walk.fail(node, "only 1-d and 2-d convolutions have a rule")
    conv = cls(
        W.shape[1] * groups, W.shape[0], tuple(W.shape[2:]),
        stride=get(walk.arg(node, 3, "stride", 1), node),
        padding=get(walk.arg(node, 4, "padding", 0), node),
        dilation=get(walk.arg(node, 5, "dilation", 1), node),
        groups=groups, bias=False, dtype=torch.float64,
    )  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(W)
    return L_in * walk.module_bound(conv, node, x)


def _rule_batch_norm_function(walk, node) -> float:
    x = _operand(walk, node)
    training = walk.get(walk.arg(node, 5, "training", False), node)
    var = walk.get(walk.arg(node, 2, "running_var"), node)
    if training or var is None:
        raise walk.fail(node, "batch statistics have no per-input constant")
    weight = walk.get(walk.arg(node, 3, "weight"), node)
    eps = walk.get(walk.arg(node, 7, "eps", 1e-5), node)
    module = SimpleNamespace(running_var=var, weight=weight, eps=eps)
    return walk.only(node, x) * _RULES[nn.BatchNorm1d](module, None)


_POOLS = {
    F.avg_pool1d: (nn.AvgPool1d, ("kernel_size", "stride", "padding", "ceil_mode",
                                  "count_include_pad")),
    F.avg_pool2d: (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode",
                                  "count_include_pad", "divisor_override")),
    F.max_pool1d: (nn.MaxPool1d, ("kernel_size", "stride", "padding", "dilation",
                                  "ceil_mode", "return_indices")),
    F.max_pool2d: (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation",
                                  "ceil_mode", "return_indices")),
    F.adaptive_avg_pool1d: (nn.AdaptiveAvgPool1d, ("output_size",)),
    F.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ("output_size",)),
    F.adaptive_max_pool1d: (nn.AdaptiveMaxPool1d, ("output_size", "return_indices")),
    F.adaptive_max_pool2d: (nn.AdaptiveMaxPool2d, ("output_size", "return_indices")),
}  # fmt: skip


def _rule_pool_function(walk, node) -> float:
    cls, names = _POOLS[node.target]
    x = _operand(walk, node)
    kwargs = {}
    for i, name in enumerate(names):
        v = walk.arg(node, i + 1, name, inspect.Parameter.empty)
        if v is not inspect.Parameter.empty:
            kwargs[name] = walk.get(v, node)
    return walk.only(node, x) * walk.module_bound(cls(**kwargs), node, x)


def _reduced_dims(walk, node):
    x = _operand(walk, node)
    dims = walk.get(walk.arg(node, 1, "dim", node.kwargs.get("axis")), node)
    if dims is None:
        raise walk.fail(node, "a reduction over every dimension mixes the batch")
    ndim = walk.get(x, node).dim()
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    dims = {d % ndim for d in dims}
    if 0 in dims:
        raise walk.fail(node, "a reduction over the batch dimension")
    shape = walk.get(x, node).shape
    return x, math.prod(shape[d] for d in dims)


def _rule_mean(walk, node) -> float:
    # the mean of m entries is the row (1/m, ..., 1/m), of norm 1/sqrt(m)
    x, m = _reduced_dims(walk, node)
    return walk.only(node, x) / math.sqrt(m) * (1.0 + _ROUNDING_MARGIN)


def _rule_sum(walk, node) -> float:
    x, m = _reduced_dims(walk, node)
    return walk.only(node, x) * math.sqrt(m) * (1.0 + _ROUNDING_MARGIN)


def _rule_cat(walk, node) -> float:
    """Concatenation (or stacking): sqrt(sum of squared bounds)."""
    tensors = walk.arg(node, 0, "tensors")
    dim = walk.get(walk.arg(node, 1, "dim", 0), node)
    if not isinstance(dim, int):
        raise walk.fail(node, "the dimension must be an int")
    if dim < 0:
        dim += walk.get(node, node).dim()
    if dim == 0:
        raise walk.fail(node, "a concatenation along the batch dimension")
    return math.sqrt(sum(walk.L(t) ** 2 for t in tensors))


def _rule_split(walk, node) -> float:
    # each piece is a restriction; the tuple as a whole is x itself
    return walk.only(node, _operand(walk, node))


def _rule_clamp(walk, node) -> float:
    return walk.only(node, _operand(walk, node))


_SAME_FUNCTIONS = (
    torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.swapaxes,
    torch.swapdims, torch.squeeze, torch.unsqueeze, torch.t, torch.movedim,
    torch.moveaxis, torch.clone, torch.flip, torch.roll, torch.narrow,
    operator.pos, operator.neg, torch.neg, torch.abs, operator.abs,
)  # fmt: skip
_SAME_METHODS = (
    "flatten", "view", "reshape", "permute", "transpose", "swapaxes", "swapdims",
    "squeeze", "unsqueeze", "t", "contiguous", "view_as", "reshape_as", "clone",
    "detach", "float", "double", "to", "type_as", "cpu", "cuda", "movedim",
    "moveaxis", "flip", "roll", "narrow", "unflatten", "neg", "abs", "abs_",
)  # fmt: skip
_REPLICATE_FUNCTIONS = (torch.tile, torch.broadcast_to, torch.repeat_interleave)
_REPLICATE_METHODS = ("expand", "expand_as", "repeat", "tile", "repeat_interleave",
                      "broadcast_to")  # fmt: skip
_SPLITS = (torch.split, torch.chunk, torch.unbind, torch.tensor_split)
_SPLIT_METHODS = ("split", "chunk", "unbind", "tensor_split")

# 1-Lipschitz and other elementwise activations (constants as for the modules)
_ACTIVATION_FUNCTIONS = {
    F.relu: 1.0, F.relu_: 1.0, torch.relu: 1.0, torch.relu_: 1.0, F.relu6: 1.0,
    F.hardtanh: 1.0, F.hardtanh_: 1.0, torch.tanh: 1.0, F.tanh: 1.0,
    torch.sigmoid: _CONSTANT_LAYERS[nn.Sigmoid],
    F.sigmoid: _CONSTANT_LAYERS[nn.Sigmoid],
    F.silu: _CONSTANT_LAYERS[nn.SiLU], F.mish: _CONSTANT_LAYERS[nn.Mish],
    F.hardswish: _CONSTANT_LAYERS[nn.Hardswish],
    F.hardsigmoid: _CONSTANT_LAYERS[nn.Hardsigmoid],
    F.softplus: 1.0, F.softsign: 1.0, F.logsigmoid: 1.0, F.tanhshrink: 1.0,
    F.celu: 1.0, F.selu: _RULES[nn.SELU](None, None),
}  # fmt: skip
_ACTIVATION_METHODS = {
    "relu": 1.0, "relu_": 1.0, "tanh": 1.0, "tanh_": 1.0,
    "sigmoid": _CONSTANT_LAYERS[nn.Sigmoid], "sigmoid_": _CONSTANT_LAYERS[nn.Sigmoid],
}  # fmt: skip

_FUNCTION_RULES = {
    **dict.fromkeys(_SAME_FUNCTIONS, _rule_same),
    **dict.fromkeys(_REPLICATE_FUNCTIONS, _rule_replicate),
    **dict.fromkeys(_SPLITS, _rule_split),
    **{f: _constant_rule(c) for f, c in _ACTIVATION_FUNCTIONS.items()},
    F.leaky_relu: _rule_leaky_relu, F.leaky_relu_: _rule_leaky_relu,
    F.elu: _rule_elu, F.elu_: _rule_elu, F.gelu: _rule_gelu, F.prelu: _rule_prelu,
    torch.clamp: _rule_clamp, torch.clip: _rule_clamp,
    F.dropout: _rule_dropout, F.dropout1d: _rule_dropout,
    F.dropout2d: _rule_dropout, F.alpha_dropout: _rule_dropout, F.pad: _rule_pad,
    operator.getitem: _rule_getitem,
    operator.add: _rule_add, operator.iadd: _rule_add, torch.add: _rule_add,
    operator.sub: _rule_sub, operator.isub: _rule_sub, torch.sub: _rule_sub,
    torch.subtract: _rule_sub, torch.rsub: _rule_rsub,
    operator.mul: _rule_mul, operator.imul: _rule_mul, torch.mul: _rule_mul,
    torch.multiply: _rule_mul,
    operator.truediv: _rule_div, operator.itruediv: _rule_div, torch.div: _rule_div,
    torch.true_divide: _rule_div, torch.divide: _rule_div,
    operator.matmul: _rule_matmul, torch.matmul: _rule_matmul, torch.mm: _rule_matmul,
    F.linear: _rule_linear_function,
    F.conv1d: _rule_conv_function, F.conv2d: _rule_conv_function,
    F.batch_norm: _rule_batch_norm_function,
    **dict.fromkeys(_POOLS, _rule_pool_function),
    torch.mean: _rule_mean, torch.sum: _rule_sum,
    torch.cat: _rule_cat, torch.concat: _rule_cat, torch.concatenate: _rule_cat,
    torch.stack: _rule_cat,
}  # fmt: skip
_METHOD_RULES = {
    **dict.fromkeys(_SAME_METHODS, _rule_same),
    **dict.fromkeys(_REPLICATE_METHODS, _rule_replicate),
    **dict.fromkeys(_SPLIT_METHODS, _rule_split),
    **{m: _constant_rule(c) for m, c in _ACTIVATION_METHODS.items()},
    "clamp": _rule_clamp, "clip": _rule_clamp, "clamp_": _rule_clamp,
    "add": _rule_add, "add_": _rule_add, "sub": _rule_sub, "sub_": _rule_sub,
    "mul": _rule_mul, "mul_": _rule_mul, "div": _rule_div, "div_": _rule_div,
    "true_divide": _rule_div, "matmul": _rule_matmul, "mm": _rule_matmul,
    "mean": _rule_mean, "sum": _rule_sum,
}  # fmt: skip
