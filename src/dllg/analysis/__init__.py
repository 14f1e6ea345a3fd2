"""What a fusion method's weights do over an answer, read back from `dllg eval` records: statistics
(`dynamics`) and figures (`figures`, needs matplotlib)."""
