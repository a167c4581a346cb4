"""The judge: scores each round's answers, publishes verdicts, updates the room's ratings."""
