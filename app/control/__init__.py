"""Host tracking and the heuristic controller (Tamiyo in the original Esper).

The signal tracker turns each epoch's losses and accuracies into the signals a controller
acts on and latches host stabilization; the heuristic controller is the rule-based
baseline the PPO controller is measured against.
"""
