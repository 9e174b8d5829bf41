"""Check smoothlearn.zoo's ResNet-50 against torchvision's, where torchvision imports.

The development and CI machines run the CPU build of torch 2.13.0, next to
which the registry's torchvision does not import, so this comparison cannot
be part of the test suite (a test that always skips has not run).  The suite
checks the layout against an independent implementation instead
(tests/test_zoo.py).  On a machine where torchvision imports (a GPU user's),
run::

    python benchmarks/check_torchvision_resnet50.py

It loads torchvision's randomly initialised ResNet-50 state dict into
``get_architecture("resnet50")`` under Cohen's ``1.module.`` prefix and
compares the logits (tolerance 1e-5).
"""

import sys

import torch

from smoothlearn.zoo import get_architecture

# torchvision's (and Cohen's) ImageNet normalisation
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def main() -> int:
    try:
        from torchvision.models import resnet50
    except Exception as exc:  # ImportError, or RuntimeError from its operators
        print(f"torchvision does not import here ({type(exc).__name__}: {exc}).")
        return 2
    torch.manual_seed(0)
    reference = resnet50(weights=None).eval()
    ours = get_architecture("resnet50")
    same_keys = [(k, v.shape) for k, v in ours[1].state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
    ours[1].load_state_dict(reference.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = reference((x - IMAGENET_MEAN) / IMAGENET_STD)
        diff = (ours.eval()(x) - want).abs().max().item()
    print(f"same state-dict keys and shapes: {same_keys}; max |logit diff| {diff:.2e}")
    return 0 if same_keys and diff <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
