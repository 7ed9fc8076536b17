"""Import Once-for-All's own code (the `ofa` PyPI package) as a test reference.

`ofa` imports torchvision at import time only for an ImageNet data-loader class the network code never
uses; torchvision's only torch-2.13 wheel is a CUDA build, so the tests give it an empty stand-in.
"""

from __future__ import annotations

import sys
import types

import pytest


def import_ofa():
    """Return OFA's ``OFAMobileNetV3`` and ``set_running_statistics``, or skip the test."""
    if "torchvision" not in sys.modules:
        tv = types.ModuleType("torchvision")
        transforms = types.ModuleType("torchvision.transforms")
        functional = types.ModuleType("torchvision.transforms.functional")

        class RandomResizedCrop:  # only subclassed by an unused OFA data-loader class
            pass

        class RandomCrop:
            pass

        transforms.RandomResizedCrop = RandomResizedCrop
        transforms.RandomCrop = RandomCrop
        transforms.functional = functional
        tv.transforms = transforms
        datasets = types.ModuleType("torchvision.datasets")
        tv.datasets = datasets
        sys.modules.update(
            {
                "torchvision": tv,
                "torchvision.transforms": transforms,
                "torchvision.transforms.functional": functional,
                "torchvision.datasets": datasets,
            }
        )
    ofa_nets = pytest.importorskip(
        "ofa.imagenet_classification.elastic_nn.networks",
        reason="the `ofa` reference package is not installed (pip install ofa --no-deps)",
    )
    from ofa.imagenet_classification.elastic_nn.utils import set_running_statistics

    return ofa_nets.OFAMobileNetV3, set_running_statistics
