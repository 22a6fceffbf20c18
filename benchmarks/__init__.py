"""Side-by-side ratio benchmarks; results go to docs/benchmarks.md."""
