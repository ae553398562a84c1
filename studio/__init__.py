"""Avatar Studio: personal, controllable head avatars from one phone video."""
__version__ = "0.1.0"
