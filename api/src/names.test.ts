import fc from 'fast-check';
import { isDnsLabel, keyHash, keyName, normalizeKey, randomName } from './names';

describe('backend names', () => {
  it('random names are DNS labels under the spawner- prefix, never shaped like keyed names', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const n = randomName();
      expect(isDnsLabel(n)).toBe(true);
      expect(n).toMatch(/^spawner-[a-z0-9]{12}$/);
      expect(n.startsWith('spawner-k-')).toBe(false);
      seen.add(n);
    }
    expect(seen.size).toBe(2000);
  });

  it('keyed names are deterministic, DNS-valid and at most 63 characters for any key', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 256, unit: 'binary' }),
        fc.constantFrom('spawner', 'a', 'x'.repeat(63)),
        (key, ns) => {
          const n = keyName(ns, key);
          expect(n).toBe(keyName(ns, key));
          expect(isDnsLabel(n)).toBe(true);
          expect(n.length).toBeLessThanOrEqual(63);
          expect(n).toMatch(/^spawner-k-[0-9a-f]{32}$/);
        },
      ),
    );
  });

  it('namespace and key cannot be traded against each other by concatenation', () => {
    expect(keyHash('a', 'bc')).not.toBe(keyHash('ab', 'c'));
    // ('a/b', 'c') cannot arise: a namespace is a DNS label, without '/'.
    expect(keyHash('spawner', 'doc')).not.toBe(keyHash('other', 'doc'));
    expect(keyHash('spawner', 'doc')).not.toBe(keyHash('spawner', 'doc '));
    expect(keyHash('spawner', 'Doc')).not.toBe(keyHash('spawner', 'doc'));
  });

  it('distinct keys give distinct names (no collisions among many similar keys)', () => {
    const names = new Set<string>();
    for (let i = 0; i < 20000; i++) names.add(keyName('spawner', `doc-${i}`));
    expect(names.size).toBe(20000);
  });

  it('lone surrogates are normalised the way UTF-8 and the API server would', () => {
    expect(normalizeKey('a\uD800b')).toBe('a\uFFFDb');
    expect(normalizeKey('😀')).toBe('😀');
    expect(keyName('s', 'a\uD800')).toBe(keyName('s', 'a\uFFFD'));
  });
});
