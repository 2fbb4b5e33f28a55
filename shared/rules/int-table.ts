/**
 * Hash tables keyed by one or two int32 values (IPv4 addresses, address pairs), and a set of
 * int32 triples (row, window generation, value), for the rule engine's per-record lookups.
 *
 * A `Map<number, V>` keyed by IPv4 addresses boxes every address outside V8's small-integer
 * range (31 bits with pointer compression: half of all IPv4 addresses) into a heap number on
 * each lookup, which shows up as garbage-collector time at millions of records. These tables
 * keep keys in Int32Arrays (open addressing, linear probing, grown at half load), so a lookup
 * allocates nothing. The tables are bounded by the engine's maxTrackedKeys; the triple set by
 * the distinct values of the windows still open (closed windows' entries go when it grows).
 */

function hash(a: number, b: number): number {
  let h = Math.imul(a ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(b ^ 0x27d4eb2f, 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return h ^ (h >>> 13);
}

/** Map from a pair of int32 keys (use 0 as the second key for single keys). */
export class IntPairTable<V> {
  private keysA: Int32Array;
  private keysB: Int32Array;
  private vals: Array<V | undefined>;
  private mask: number;
  size = 0;

  constructor(initialCapacity = 1024) {
    let cap = 16;
    while (cap < initialCapacity * 2) cap *= 2;
    this.keysA = new Int32Array(cap);
    this.keysB = new Int32Array(cap);
    this.vals = new Array<V | undefined>(cap).fill(undefined);
    this.mask = cap - 1;
  }

  get(a: number, b: number): V | undefined {
    const mask = this.mask;
    const ka = this.keysA;
    const kb = this.keysB;
    const vals = this.vals;
    let i = hash(a, b) & mask;
    for (;;) {
      const v = vals[i];
      if (v === undefined) return undefined;
      if (ka[i] === (a | 0) && kb[i] === (b | 0)) return v;
      i = (i + 1) & mask;
    }
  }

  /** Adds or replaces the value for (a, b). */
  set(a: number, b: number, value: V): void {
    if ((this.size + 1) * 2 > this.vals.length) this.grow();
    this.insert(a | 0, b | 0, value);
  }

  private insert(a: number, b: number, value: V): void {
    const mask = this.mask;
    let i = hash(a, b) & mask;
    for (;;) {
      const v = this.vals[i];
      if (v === undefined) {
        this.keysA[i] = a;
        this.keysB[i] = b;
        this.vals[i] = value;
        this.size += 1;
        return;
      }
      if (this.keysA[i] === a && this.keysB[i] === b) {
        this.vals[i] = value;
        return;
      }
      i = (i + 1) & mask;
    }
  }

  private grow(): void {
    const oldA = this.keysA;
    const oldB = this.keysB;
    const oldVals = this.vals;
    const cap = oldVals.length * 2;
    this.keysA = new Int32Array(cap);
    this.keysB = new Int32Array(cap);
    this.vals = new Array<V | undefined>(cap).fill(undefined);
    this.mask = cap - 1;
    this.size = 0;
    for (let i = 0; i < oldVals.length; i++) {
      const v = oldVals[i];
      if (v !== undefined) this.insert(oldA[i]!, oldB[i]!, v);
    }
  }

  *values(): IterableIterator<V> {
    for (const v of this.vals) if (v !== undefined) yield v;
  }

  clear(): void {
    this.vals.fill(undefined);
    this.size = 0;
  }
}

/**
 * Set of int32 triples: the distinct values of every aggregate in one table, keyed (aggregate
 * row, window generation, value), instead of one set object per aggregate. A window that
 * closes bumps its row's generation, so its old entries stop matching without being removed;
 * `isLive(a, b)` says whether (row, generation) is still current, and the table drops the
 * entries that are not whenever it would grow, so it holds the open windows' values, not every
 * value a long batch ever saw.
 */
export class IntTripleSet {
  private keysA: Int32Array;
  private keysB: Int32Array;
  private keysC: Int32Array;
  private used: Uint8Array;
  private mask: number;
  size = 0;

  private readonly isLive: (a: number, b: number) => boolean;

  constructor(initialCapacity = 1024, isLive: (a: number, b: number) => boolean = () => true) {
    let cap = 16;
    while (cap < initialCapacity * 2) cap *= 2;
    this.keysA = new Int32Array(cap);
    this.keysB = new Int32Array(cap);
    this.keysC = new Int32Array(cap);
    this.used = new Uint8Array(cap);
    this.mask = cap - 1;
    this.isLive = isLive;
  }

  /** Adds (a, b, c); true when it was not there yet. */
  add(a: number, b: number, c: number): boolean {
    if ((this.size + 1) * 2 > this.used.length) this.grow();
    return this.insert(a | 0, b | 0, c | 0);
  }

  private insert(a: number, b: number, c: number): boolean {
    const mask = this.mask;
    const used = this.used;
    const ka = this.keysA;
    const kb = this.keysB;
    const kc = this.keysC;
    let i = hash(Math.imul(a, 0x01000193) ^ b, c) & mask;
    for (;;) {
      if (used[i] === 0) {
        used[i] = 1;
        ka[i] = a;
        kb[i] = b;
        kc[i] = c;
        this.size += 1;
        return true;
      }
      if (kc[i] === c && ka[i] === a && kb[i] === b) return false;
      i = (i + 1) & mask;
    }
  }

  private grow(): void {
    const { keysA, keysB, keysC, used } = this;
    let live = 0;
    for (let i = 0; i < used.length; i++) {
      if (used[i] === 1 && !this.isLive(keysA[i]!, keysB[i]!)) used[i] = 0;
      else live += used[i]!;
    }
    // the same size again while at most a quarter of it is live, else twice the size
    const cap = live * 4 <= used.length ? used.length : used.length * 2;
    this.keysA = new Int32Array(cap);
    this.keysB = new Int32Array(cap);
    this.keysC = new Int32Array(cap);
    this.used = new Uint8Array(cap);
    this.mask = cap - 1;
    this.size = 0;
    for (let i = 0; i < used.length; i++)
      if (used[i] === 1) this.insert(keysA[i]!, keysB[i]!, keysC[i]!);
  }
}
