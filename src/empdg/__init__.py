"""empdg: EmpDG empathetic dialogue generation with Lightning + Hydra."""

__version__ = "0.1.0"
