"""Reading single SAE features: their dashboards from the store, and their export."""
