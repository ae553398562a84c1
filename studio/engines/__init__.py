"""Avatar engines: load a trained project and render controls to images."""
