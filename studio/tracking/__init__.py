"""Face tracking: mediapipe face mesh, head pose, named expressions, alignment, mattes."""
