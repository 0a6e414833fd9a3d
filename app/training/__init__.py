"""Training loops (Tolaria in the original Esper).

The host epoch loop, datasets, the vectorized PPO loop over parallel environments, the
progress detector and the governor that rolls a host back after a catastrophic loss.
"""
