"""Elastic operators, the OFA MobileNetV3 supernet, static subnets and checkpoint I/O."""
