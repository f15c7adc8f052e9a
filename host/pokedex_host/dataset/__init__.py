"""The data side: ingest sources into one raw store, process it into the YOLO/ImageFolder layout
every later stage reads, and verify the result. See docs/data.md."""
