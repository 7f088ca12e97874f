"""`make bench`: SPEC §5 measured side by side with the naive (seed) way. See BENCHMARKS.md."""
