"""The field and build tools: the board image (``build``), board files (``boards``), flashing (``flash``)."""
