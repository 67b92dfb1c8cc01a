"""`python -m patsearch ...` (used by torchrun: `torchrun --nproc_per_node N -m patsearch train ...`)."""
from patsearch.cli import main

if __name__ == "__main__":
    main()
