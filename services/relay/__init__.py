"""The webhook relay: posts organisations' human clicks to their endpoints, signed."""
