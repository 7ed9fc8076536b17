"""Import Once-for-All's own code (the `ofa` PyPI package) as a test reference.

`ofa` imports torchvision at import time only for an ImageNet data-loader class the network code never
uses; torchvision's only torch-2.13 wheel is a CUDA build, so the tests give it an empty stand-in.
"""

from __future__ import annotations

import sys
import types

import pytest


def _ofa_networks():
    """OFA's elastic network classes (``ofa.imagenet_classification.elastic_nn.networks``)."""
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
    return pytest.importorskip(
        "ofa.imagenet_classification.elastic_nn.networks",
        reason="the `ofa` reference package is not installed (pip install ofa --no-deps)",
    )


def import_ofa():
    """Return OFA's ``OFAMobileNetV3`` and ``set_running_statistics``, or skip the test."""
    ofa_nets = _ofa_networks()
    from ofa.imagenet_classification.elastic_nn.utils import set_running_statistics

    return ofa_nets.OFAMobileNetV3, set_running_statistics


def import_ofa_resnets():
    """Return OFA's ``OFAResNets``, or skip the test."""
    return _ofa_networks().OFAResNets
