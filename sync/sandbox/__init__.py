"""Wire-faithful vendor emulators with fault injection, for tests, benchmarks and the demo."""
