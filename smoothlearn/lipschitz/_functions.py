r"""Bounds of the functions and methods a traced forward calls.

A rule is ``rule(walk, node) -> float``, the bound :math:`L_v` of the node
from those of its arguments (``walk.L(arg)``), their values (``walk.get``)
and the node's own value; ``_graph`` has the walk.  Also here: which
nodes are constants for the walk (values that depend only on the input's
shape), which write in place, which return tuples.
"""

from __future__ import annotations

import builtins
import inspect
import math
import operator
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.node import Node

from ._operators import _ROUNDING_MARGIN
from ._rules import _CONSTANT_LAYERS, _RULES, _rule_linear

__all__: list[str] = []


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
    builtins.getattr: _rule_getattr,
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
