"""Stage 3, capture: find every SE gate, hook the forward pass, stream the gates into GateStats."""
