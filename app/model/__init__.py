"""The host network, its seed slot and the blueprints seeds grow from (Kasmina in Esper).

A `HostCNN` owns one `SeedSlot`; the slot carries a seed through its lifecycle (train in
isolation, blend in, prove itself, fossilize or be culled) and reports every step as a
domain event.
"""
