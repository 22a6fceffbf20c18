"""`saola demo`: Lâm Đồng's operations center on an ordinary day, with live simulated sources."""
