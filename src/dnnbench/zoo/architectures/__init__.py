"""Architectures no maintained library has, implemented in dnnbench from their papers."""

from .shufflenet_v1 import shufflenet_v1_g8

ARCHITECTURES = {"shufflenet_v1_g8": shufflenet_v1_g8}
