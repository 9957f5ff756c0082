"""Where log lines come from: files (rotated and gzipped), and more in their own modules."""
