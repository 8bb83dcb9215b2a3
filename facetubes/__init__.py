"""facetubes."""
