/**
 * Old event versions are upcast when read, never rewritten in the store.
 * An upcaster lifts one type from version N to N+1; chains apply in order.
 */
export interface Upcaster {
  readonly type: string;
  readonly fromVersion: number;
  upcast(data: unknown): unknown;
}

export class UpcasterRegistry {
  private readonly byKey = new Map<string, Upcaster>();

  constructor(upcasters: Iterable<Upcaster> = []) {
    for (const upcaster of upcasters) this.register(upcaster);
  }

  register(upcaster: Upcaster): this {
    const key = `${upcaster.type}@${upcaster.fromVersion}`;
    if (this.byKey.has(key)) throw new Error(`an upcaster for ${key} is registered already`);
    this.byKey.set(key, upcaster);
    return this;
  }

  /** Brings stored data to the newest version the registry knows. */
  upcast(type: string, schemaVersion: number, data: unknown): { schemaVersion: number; data: unknown } {
    let version = schemaVersion;
    let current = data;
    for (let next = this.byKey.get(`${type}@${version}`); next; next = this.byKey.get(`${type}@${version}`)) {
      current = next.upcast(current);
      version += 1;
    }
    return { schemaVersion: version, data: current };
  }
}
