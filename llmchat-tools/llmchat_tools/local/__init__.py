"""The embedded default: the whole system as local, supervised processes (`llmchat up`)."""
