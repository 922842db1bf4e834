import sys

from tvm_ofa.cli import main

sys.exit(main())
