// Placeholder: benchmarks land with the detection and processing issues.
console.log('bench: not implemented yet');
