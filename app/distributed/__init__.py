"""One training across several processes: torchrun's ranks and the collectives they meet
in (world.py)."""
