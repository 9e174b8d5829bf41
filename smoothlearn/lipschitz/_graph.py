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
  from the layer rules for modules (``_rules``) and from ``_functions``;
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

import inspect
import math

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.node import Node, map_aggregate
from torch.nn.utils.parametrize import type_before_parametrizations

from ._functions import (
    _FUNCTION_RULES,
    _METHOD_RULES,
    _READS_SHAPE_OF_OTHER,
    _is_inplace,
    _is_shape_query,
    _returns_tuple,
)
from ._rules import _CONSTANT_LAYERS, _RULES

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
