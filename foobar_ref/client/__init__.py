"""The client side of the request path: `browser` (fetch, step by step) and its records and text view."""
