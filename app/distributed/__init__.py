"""One training across several processes: torchrun's ranks and the collectives they meet
in (world.py)."""

# How long a rank waits in a collective for the others before giving up on them; here
# rather than in world.py, so that the command line shows it without loading torch.
DEFAULT_TIMEOUT_S = 300.0
