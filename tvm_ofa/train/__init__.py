"""Supernet training: progressive shrinking with distillation, BN recalibration, evaluation."""
