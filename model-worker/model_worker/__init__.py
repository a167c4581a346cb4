"""The model worker: takes reply jobs for a room and streams a model's answer back."""
