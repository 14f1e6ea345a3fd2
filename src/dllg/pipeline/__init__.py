"""The gate's life: collect labels, extract teacher-forced features, train."""
