"""Esper: morphogenetic neural-network training with a PPO controller.

A host network trains on a dataset while a controller decides when to germinate a seed
module into a host slot, train it in isolation, blend it in, and fossilize or cull it.
"""

__version__ = "0.1.0"
