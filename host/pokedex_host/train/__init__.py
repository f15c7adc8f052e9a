"""Training (issue "train and shrink"): students on the KPU family, resumable across sessions."""
