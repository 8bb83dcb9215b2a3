"""models3d."""
