"""Publishing a notebook: runs in the author's own server, as the author (CLI, the Publish form, validation, thumbnails)."""
