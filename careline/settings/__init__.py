"""Settings in layers: `base` (every environment, embedded defaults), `test`, `production`."""
