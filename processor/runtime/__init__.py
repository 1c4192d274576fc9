"""The stage runtime both stages share: the loop, its ports, signals."""
