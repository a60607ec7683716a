"""Where protocol steps run: emulation (all parties in one process) or the network."""
