"""Shared contracts of the training application (Leyline in the original Esper).

Event types and the event record, seed stages and their transitions, controller actions
and the per-epoch training signals. Every other package depends on these; these depend on
nothing but the standard library.
"""
