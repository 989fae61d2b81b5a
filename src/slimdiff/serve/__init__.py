"""`slimdiff serve`: a local page to generate and compare a model and its teacher."""
