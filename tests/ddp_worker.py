"""Run by tests/test_train.py under torchrun: trains a few steps, then every rank saves its weights."""
import os
import sys

import torch

from tvm_ofa.train.config import load_train_config
from tvm_ofa.train.shrink import train_supernet

result = train_supernet(load_train_config(sys.argv[1]))
torch.save(result.supernet.state_dict(), os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.pt"))
