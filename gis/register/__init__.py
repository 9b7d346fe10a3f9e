"""A town's own register: households, residents and staff read from the files a township keeps."""
