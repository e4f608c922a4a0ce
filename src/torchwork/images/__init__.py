"""Your own data, step 1 for images: find the class folders and decode every image once
into one uint8 tensor held in memory (read).

Nothing is imported here: `read` imports torch and Pillow, and only a run on images needs them.
"""
