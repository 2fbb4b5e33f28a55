/** Deterministic xorshift32 numbers in [0, 1): the same seed gives the same sequence, so
 * generated benchmark inputs and test scenarios are the same bytes on every run. */
export function seededRandom(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}
