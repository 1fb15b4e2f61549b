"""The inventory: datasets, models and their versions, federated sites."""
