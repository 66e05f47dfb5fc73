"""Push: publish a blessed model to the model store (TFX-Pusher-style gating inside the component)."""
