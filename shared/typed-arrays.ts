/** The typed arrays the decoders keep their columns in. */
export type NumberColumn = Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array;

/**
 * A column grown to `length` elements: a new array of the same type holding the first `keep`
 * elements of `old` (all of them by default) and zeros after them. The rule engine's rows and
 * the pcap decoder's conversation table grow their columns this way.
 */
export function grown<T extends NumberColumn>(old: T, length: number, keep = old.length): T {
  const copy = new (old.constructor as new (length: number) => T)(length);
  copy.set(keep >= old.length ? old : old.subarray(0, keep));
  return copy;
}
