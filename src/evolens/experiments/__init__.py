"""CPU-sized reproductions of the papers' claims, each one command that writes figures and a JSON of numbers."""
